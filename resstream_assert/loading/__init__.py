"""Load: read a model from a spec string (zoo, torchvision, timm, a user factory, an ONNX file).

The first arrow of the flow. ``spec`` holds the grammar and the :class:`LoadedModel`
record; ``torch_model`` builds architectures and reads weights (``weights_only=True``);
``onnx_file`` reads ONNX files; ``ort_session`` opens onnxruntime sessions; ``onnx_export``
turns a torch model into an ONNX file. Negative controls (``+nc-...``) are model edits,
applied after loading by :func:`resstream_assert.pipeline.load_model` (they need discovery).
"""

from __future__ import annotations

from resstream_assert.errors import ModelSpecError
from resstream_assert.loading.spec import CONTROLS, IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelSpec
from resstream_assert.loading.torch_model import read_weights, weights_digest

__all__ = ["CONTROLS", "IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "ModelSpec", "load_model", "read_weights",
           "weights_digest"]


def load_model(spec: str | ModelSpec, *, input_size: int | None = None, trust_pickle: bool = False,
               providers: tuple[str, ...] = ()) -> LoadedModel:
    """Load what ``spec`` names, as it is stored: a torch model in eval mode, or an ONNX file.

    A spec with a negative control is refused here: use :func:`resstream_assert.load_model`,
    which applies the control (and runs a torch model through ONNX when asked).

    Example:
        >>> m = load_model("torchvision:resnet18")  # doctest: +SKIP
        >>> m.input_size, m.num_classes  # doctest: +SKIP
        (224, 1000)
    """
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    if spec.control:
        raise ModelSpecError(f"Model spec {spec.text!r} asks for the negative control +{spec.control}, a model edit "
                             "applied after loading: load it with resstream_assert.load_model(...).")
    if spec.kind == "onnx":
        from resstream_assert.loading.onnx_file import load_onnx

        return load_onnx(spec, input_size, providers)
    from resstream_assert.loading.torch_model import load_torch, load_zoo

    loaded = load_zoo(spec) if spec.kind == "zoo" else load_torch(spec, trust_pickle=trust_pickle)
    if input_size:
        loaded.input_size = int(input_size)
    loaded.module.eval()
    loaded.digest = weights_digest(loaded.module)
    return loaded
