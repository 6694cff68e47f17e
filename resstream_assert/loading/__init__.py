"""Load: read a model from a spec string (zoo, torchvision, timm, a user factory, an ONNX file).

The first arrow of the flow. ``spec`` holds the grammar and the :class:`LoadedModel`
record; ``checkpoint`` reads weights files by content (``weights_only=True``), finds the state
dict in the wrappers people publish and refuses what is not weights; ``torch_model`` builds
architectures and loads weights into them;
``onnx_file`` reads ONNX files; ``ort_session`` opens onnxruntime sessions; ``onnx_export``
turns a torch model into an ONNX file. :func:`load_stored` is the first loading step; the one function that
loads a model is :func:`resstream_assert.load_model` (``run_models``), whose later steps apply the negative
controls (``+nc-...``: model edits that need discovery), the normalisation and the backend.
"""

from __future__ import annotations

from resstream_assert.errors import ModelSpecError
from resstream_assert.loading.checkpoint import Checkpoint, check_finite, read_checkpoint
from resstream_assert.loading.spec import (CONTROLS, IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelSpec, OnnxInfo,
                                           as_spec)
from resstream_assert.loading.torch_model import read_weights, weights_digest

__all__ = ["CONTROLS", "IMAGENET_MEAN", "IMAGENET_STD", "Checkpoint", "LoadedModel", "ModelSpec", "OnnxInfo", "as_spec",
           "check_finite", "check_input_size", "load_stored", "read_checkpoint", "read_weights", "weights_digest"]


def load_stored(spec: str | ModelSpec, *, input_size: int | None = None, trust_pickle: bool = False,
                providers: tuple[str, ...] = (), safe_globals: tuple[str, ...] = ()) -> LoadedModel:
    """The first loading step: what ``spec`` names, as it is stored (a torch model in eval mode, or an ONNX file).

    The one function that loads a model is :func:`resstream_assert.load_model`; it calls this, then applies
    the later steps (normalisation, input size, negative control, backend). A spec with a negative control
    is refused here, since the control is one of those later steps.

    Example:
        >>> m = load_stored("torchvision:resnet18")  # doctest: +SKIP
        >>> m.input_size, m.num_classes  # doctest: +SKIP
        (224, 1000)
    """
    spec = as_spec(spec)
    if spec.control:
        raise ModelSpecError(f"Model spec {spec.text!r} asks for the negative control +{spec.control}, a model edit "
                             "applied by a later loading step: load it with resstream_assert.load_model(...).")
    check_input_size(input_size)
    if spec.kind == "onnx":
        from resstream_assert.loading.onnx_file import load_onnx

        return load_onnx(spec, input_size, providers)
    from resstream_assert.loading.torch_model import load_torch, load_zoo

    loaded = load_zoo(spec) if spec.kind == "zoo" else load_torch(spec, trust_pickle=trust_pickle,
                                                                   safe_globals=tuple(safe_globals))
    check_finite(loaded.module.state_dict().items(), f"The model of spec {spec.text!r}")
    if input_size:
        loaded = loaded.with_(input_size=int(input_size), input_size_source="given")
    loaded.module.eval()
    return loaded.with_(digest=weights_digest(loaded.module))


def check_input_size(input_size) -> None:
    """Refuse an input size that is not a positive whole number of pixels (``None`` = the model's own).

    Example:
        >>> check_input_size(-3)
        Traceback (most recent call last):
        ...
        resstream_assert.errors.ModelSpecError: input size -3: must be a positive whole number of pixels (e.g. 32 or 224), or unset for the model's own size.
    """
    if input_size is None:
        return
    import numbers

    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral) or input_size < 1:
        raise ModelSpecError(f"input size {input_size!r}: must be a positive whole number of pixels (e.g. 32 or 224), "
                             "or unset for the model's own size.")
