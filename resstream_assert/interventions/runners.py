"""What every intervention runner holds, per backend: the model ready to run, and its inputs made
from the probe's uint8 images with the model's own normalisation.

X1/X2 (``scaling``) and X3 (``downstream``) each subclass one per backend and add how they edit.
"""

from __future__ import annotations

import numpy as np

from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions.settings import InterventionOptions


class TorchRunner:
    """A torch model in eval mode on the run's device, its block nodes and its input normaliser.

    Example:
        >>> runner = TorchRunner(env, InterventionOptions())  # doctest: +SKIP
        >>> runner.inputs(env.probe.images[:8]).shape  # doctest: +SKIP
        torch.Size([8, 3, 96, 96])
    """

    def __init__(self, env: InterventionEnv, opts: InterventionOptions):
        import torch

        from resstream_assert.capture.torch_fx import normalizer
        from resstream_assert.discovery.torch_graph import block_nodes

        self.torch, self.env, self.opts = torch, env, opts
        self.module = env.loaded.module.eval()
        self.dev = torch.device(env.device)
        self.module.to(self.dev)
        self.nodes = block_nodes(self.module)
        self.norm = normalizer(env.loaded.mean, env.loaded.std, self.dev)

    def inputs(self, images: np.ndarray):
        """uint8 images ``(N, 3, H, W)`` -> the model's normalised float input on its device."""
        return self.norm(self.torch.as_tensor(images).float() / 255)


class OnnxRunner:
    """An ONNX model read once, its graph, value types, input name and dtype, and providers.

    Example:
        >>> runner = OnnxRunner(env, InterventionOptions())  # doctest: +SKIP
        >>> runner.inputs(env.probe.images[:8]).dtype  # doctest: +SKIP
        dtype('float32')
    """

    def __init__(self, env: InterventionEnv, opts: InterventionOptions):
        from resstream_assert.discovery.onnx_graph import OnnxGraph
        from resstream_assert.interventions.segment_onnx import elem_types
        from resstream_assert.loading.onnx_file import image_input, read_model

        self.env, self.opts = env, opts
        assert env.loaded.onnx_path is not None  # this runner is chosen for models on the onnx backend only
        self.model, _ = read_model(env.loaded.onnx_path)
        self.graph = OnnxGraph(self.model)
        self.types = elem_types(self.model)
        info = env.loaded.onnx
        self.input_name = info.input_name if info else image_input(self.model)[0].name
        self.dtype = np.dtype(info.input_dtype if info else "float32")
        self.providers = info.providers if info else ()
        self.mean = np.asarray(env.loaded.mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(env.loaded.std, np.float32).reshape(1, 3, 1, 1)

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """uint8 images ``(N, 3, H, W)`` -> the model's normalised input, in the dtype its graph expects."""
        return ((images.astype(np.float32) / 255 - self.mean) / self.std).astype(self.dtype, copy=False)
