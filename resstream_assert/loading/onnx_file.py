"""Reading ONNX files: parse, validate and hash them, find the image input, resolve tensor shapes, load them.

Every problem a user's file can have becomes a :mod:`resstream_assert.errors` error that
names the file and says what to do. Parsed models are cached per path, mtime and size
(and the external data files' mtime and size).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from resstream_assert.errors import CheckpointError, DiscoveryError, ModelSpecError
from resstream_assert.loading.spec import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, OnnxInfo

__all__ = ["read_model", "image_input", "value_shapes", "bn_folded", "load_onnx"]

_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}
_MODELS: "OrderedDict[tuple, tuple]" = OrderedDict()  # (path, mtime, size) -> (ModelProto, digest, externals)


def read_model(path: str | Path):
    """Parse an ONNX file (with its external data) and hash it; cached per path, mtime and size.

    Returns ``(ModelProto, sha256 hex digest of the file bytes plus external data)``.
    Raises :class:`CheckpointError` for a missing, non-ONNX, truncated or incomplete file.

    Example:
        >>> model, digest = read_model("resnet18.onnx")  # doctest: +SKIP
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"ONNX file {str(p)!r} does not exist. Check the path in the model spec (relative paths "
                              "are taken from the current directory), or write one with "
                              f"'resstream export SPEC {p.name}'.")
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _MODELS:
        model, digest, externals = _MODELS[key]
        if all(_stat(e) == st for e, st in externals):  # external data unchanged too
            _MODELS.move_to_end(key)
            return model, digest
    data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{str(p)!r} is not a readable ONNX model ({type(exc).__name__}: {exc}). It may be "
                              "truncated, corrupt, or another format (a .pth checkpoint is loaded with a "
                              "'torchvision:ARCH@FILE' spec instead); export it again.") from exc
    if model.ir_version <= 0 or not model.graph.node or not model.graph.input:
        raise CheckpointError(f"{str(p)!r} is not an ONNX model (no graph nodes or inputs were found): it is probably "
                              "another format or a truncated file. Export it again.")
    digest = hashlib.sha256(data)
    locations = sorted({e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                        for e in t.external_data if e.key == "location"})
    for loc in locations:
        ext = p.parent / loc
        if not ext.is_file():
            raise CheckpointError(f"ONNX file {str(p)!r} keeps its weights in external data {loc!r}, which is missing "
                                  f"(looked for {str(ext)!r}). Copy the data file next to the .onnx file, or export "
                                  "the model again without external data.")
        digest.update(ext.read_bytes())
    if locations:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(p.parent))
    _MODELS[key] = (model, digest.hexdigest(), [(p.parent / loc, _stat(p.parent / loc)) for loc in locations])
    while len(_MODELS) > 4:
        _MODELS.popitem(last=False)
    return model, digest.hexdigest()


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def image_input(model, path: str = "<model>"):
    """The graph's single image input ``(N, 3, H, W)`` and its numpy dtype; :class:`ModelSpecError` otherwise.

    Example:
        >>> inp, dtype = image_input(onnx.load("resnet18.onnx"))  # doctest: +SKIP
        >>> inp.name, dtype  # doctest: +SKIP
        ('input', <class 'numpy.float32'>)
    """
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    desc = ", ".join(f"{i.name}{_shape_text(i)}" for i in inputs)
    if len(inputs) != 1:
        raise ModelSpecError(f"ONNX model {path!r} has {len(inputs)} inputs ({desc}); resstream_assert needs "
                             "exactly one image input of shape (N, 3, H, W). Export the model with a single image "
                             "argument.")
    inp = inputs[0]
    tt = inp.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if tt.elem_type not in _FLOAT_TYPES or len(dims) != 4 or dims[1] not in (3, None):
        raise ModelSpecError(f"ONNX model {path!r} takes {desc} (element type {tt.elem_type}), not an image batch: "
                             "resstream_assert needs one float input of shape (N, 3, H, W). Export the image model "
                             "itself (channels first, 3 colour channels).")
    return inp, _FLOAT_TYPES[tt.elem_type]


def _shape_text(vi) -> str:
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim]
    return f"({', '.join(dims)})"


def value_shapes(model, input_name: str, names: list[str], size: int | tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Static shapes of ``names`` for one ``(1, 3, H, W)`` input (``size`` is ``H == W`` or ``(H, W)``).

    ONNX shape inference first; values it cannot resolve (e.g. a ``Pad`` whose pads are
    computed) come from one onnxruntime run on a zero image.

    Example:
        >>> value_shapes(model, "input", ["/layer1/layer1.0/Add_output_0"], 64)  # doctest: +SKIP
        {'/layer1/layer1.0/Add_output_0': (1, 64, 16, 16)}
    """
    import onnx
    from onnx import shape_inference

    h, w = (size, size) if isinstance(size, int) else size
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for inp in probe.graph.input:
        if inp.name == input_name:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, (1, 3, h, w)):
                d.Clear()
                d.dim_value = v
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        inferred = shape_inference.infer_shapes(probe, strict_mode=False, data_prop=True)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if vi.name in names and dims and all(d.HasField("dim_value") for d in dims):
                shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    except Exception:  # noqa: BLE001 - inference is best effort; onnxruntime below is the authority
        pass
    missing = [n for n in dict.fromkeys(names) if n not in shapes]
    if missing:
        shapes.update(_shapes_by_running(probe, input_name, missing, (h, w)))
    return shapes


def _shapes_by_running(model, input_name: str, names: list[str], hw: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for n in names:
        if n not in have:
            probe.graph.output.append(helper.make_empty_tensor_value_info(n))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        elem = next(i for i in probe.graph.input if i.name == input_name).type.tensor_type.elem_type
        x = np.zeros((1, 3, *hw), dtype=helper.tensor_dtype_to_np_dtype(elem))
        outs = sess.run(names, {input_name: x})
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise DiscoveryError(f"Could not run the ONNX model on a {hw[0]}x{hw[1]} image to read tensor shapes "
                             f"({type(exc).__name__}: {str(exc)[:300]}). Pass the input size the model expects "
                             "(--resstream-input-size).") from exc
    return {n: tuple(int(s) for s in o.shape) for n, o in zip(names, outs)}


def bn_folded(model) -> bool:
    """True when the graph has no ``BatchNormalization`` but shows signs of BN folded into Conv.

    Signs: the dynamo exporter's ``FuseBatchNormIntoConv`` rewrite metadata, Conv weights
    renamed ``onnx::Conv_*`` by the TorchScript exporter's constant folding, or the
    ``resstream.fold_bn`` metadata written by ``resstream export --fold-bn``.

    Example:
        >>> bn_folded(onnx.load("folded.onnx"))  # doctest: +SKIP
        True
    """
    nodes = list(model.graph.node)
    if any(n.op_type == "BatchNormalization" for n in nodes):
        return False
    if any(p.key == "resstream.fold_bn" and p.value == "1" for p in model.metadata_props):
        return True
    for n in nodes:
        if n.op_type != "Conv":
            continue
        if any(p.key == "pkg.onnxscript.rewriter.rule_name" and "FuseBatchNorm" in p.value for p in n.metadata_props):
            return True
        if len(n.input) > 1 and n.input[1].startswith("onnx::Conv"):
            return True
    return False


def load_onnx(spec, input_size: int | None = None, providers: tuple[str, ...] = (), normalisation=None):
    """Load an ONNX file as a :class:`~resstream_assert.loading.LoadedModel` (``backend="onnx"``).

    ``input_size`` comes from the graph when its H and W are static, else the argument,
    else 224. Normalization: an ONNX file does not say which mean/std it expects; files
    written by ``resstream export`` carry them in their metadata, others get ImageNet's;
    ``normalisation=(mean, std)`` (checked by the caller) overrides both.

    Example:
        >>> m = load_onnx(ModelSpec.parse("resnet18.onnx"), None, ("cpu",))  # doctest: +SKIP
        >>> m.backend, m.onnx.providers  # doctest: +SKIP
        ('onnx', ('CPUExecutionProvider',))
    """
    import json

    from resstream_assert.loading.ort_session import plain_session

    path = str(spec.target)
    if spec.control:
        raise ModelSpecError(f"Model spec {spec.text!r}: negative controls edit a torch model and cannot be applied to "
                             "an ONNX file. Apply the control to the torch model and run it with --resstream-backend "
                             "onnx instead.")
    model, digest = read_model(path)
    inp, dtype = image_input(model, path)
    check_batch_axis(inp, path)
    check_domains(model, path)
    props = {p.key: p.value for p in model.metadata_props}
    size, source = _input_size(inp, props, input_size, path)
    sess = plain_session(path, digest, providers)
    out = model.graph.output[0]
    out_dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if len(out_dims) < 2 or not out_dims[-1]:
        out_dims = list(value_shapes(model, inp.name, [out.name], size).get(out.name, (1, 0)))
    num_classes = int(np.prod(out_dims[1:])) if len(out_dims) > 1 else int(out_dims[-1])
    dynamo = any(p.key == "pkg.torch.onnx.name_scopes" for n in model.graph.node for p in n.metadata_props)
    exporter = "dynamo" if dynamo else ("torchscript" if model.producer_name == "pytorch" else "unknown")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    mean, std = normalisation or _file_normalisation(props, path)
    norm_source = "option" if normalisation else "ONNX metadata" if "resstream.mean" in props else "ImageNet default"
    class_names = tuple(json.loads(props["resstream.class_names"])) if "resstream.class_names" in props else None
    return LoadedModel(
        # An ONNX file is named by its file, not by the torch spec it was exported from (that is kept in meta):
        # a report of r18.onnx must not read as a run of torchvision:resnet18@w.pth.
        spec=spec.text, name=Path(path).name, backend="onnx", module=None,
        input_size=size, num_classes=num_classes, digest=digest, mean=mean, std=std, class_names=class_names,
        onnx_path=path, source="onnx", input_size_source=source, input_size_guessed=source == "guessed",
        normalisation_source=norm_source, exported_from=props.get("resstream.source") or None,
        onnx=OnnxInfo(providers=tuple(sess.get_providers()), input_name=inp.name, input_dtype=np.dtype(dtype).name,
                      exporter=exporter, bn_folded=bn_folded(model), opset=opset,
                      producer=f"{model.producer_name} {model.producer_version}".strip(),
                      normalisation_in_file="resstream.mean" in props))


def _file_normalisation(props: dict, path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std ``resstream export`` wrote in the file's metadata, else ImageNet's; metadata that is not
    three finite numbers each (std > 0) is refused, not used."""
    if "resstream.mean" not in props and "resstream.std" not in props:
        return IMAGENET_MEAN, IMAGENET_STD
    try:
        mean, std = (tuple(float(v) for v in props[k].split(",")) for k in ("resstream.mean", "resstream.std"))
        ok = len(mean) == len(std) == 3 and all(np.isfinite(mean + std)) and min(std) > 0
    except (KeyError, ValueError):
        ok = False
    if not ok:
        raise ModelSpecError(f"ONNX model {path!r}: its metadata resstream.mean = {props.get('resstream.mean')!r}, "
                             f"resstream.std = {props.get('resstream.std')!r} is not a normalisation (3 finite numbers "
                             "each, std > 0). Export it again with 'resstream export', or give the model's "
                             "normalisation with --resstream-mean R G B --resstream-std R G B.")
    return mean, std


def _input_size(inp, props: dict, input_size: int | None, path: str) -> tuple[int, str]:
    """The side the graph is run at, and where it came from: the graph's fixed H and W, the size given, the
    size ``resstream export`` wrote in the metadata, or a guess of 224 px (with a warning, as for torch)."""
    from resstream_assert.errors import ResstreamWarning

    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if dims[2] and dims[3]:
        if input_size and int(input_size) != dims[2]:
            warnings.warn(f"{path}: the graph's input is fixed at {dims[2]}x{dims[3]} px; ignoring input size "
                          f"{input_size}. Export it again with '--input-size {input_size}' to test that size.",
                          stacklevel=3)
        return int(dims[2]), "the graph's fixed input"
    if input_size:
        return int(input_size), "given"
    if str(props.get("resstream.input_size", "")).isdigit():
        return int(props["resstream.input_size"]), "the file's metadata (resstream export)"
    warnings.warn(ResstreamWarning(
        f"{Path(path).name}: input size 224 px, guessed: the graph's height and width are dynamic and the file does "
        "not say what the model was trained at, and statistics change with the size. Pass the size the model was "
        "trained at with --resstream-input-size N (Python: input_size=N) to silence this."), stacklevel=3)
    return 224, "guessed"


def check_batch_axis(inp, path: str) -> None:
    """:class:`ModelSpecError` for a graph whose batch axis is a fixed number (torch's default export).

    Example:
        >>> check_batch_axis(image_input(onnx.load("fixed.onnx"))[0], "fixed.onnx")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        resstream_assert.errors.ModelSpecError: ONNX model 'fixed.onnx' takes a fixed batch of 1 image(s) ...
    """
    dim = inp.type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value") and dim.dim_value > 0:
        raise ModelSpecError(
            f"ONNX model {path!r} takes a fixed batch of {dim.dim_value} image(s) (input {inp.name}{_shape_text(inp)}"
            "), but probe images run in batches of any size. Export it with a dynamic batch axis: "
            f"torch.onnx.export(model, x, {Path(path).name!r}, input_names=['input'], "
            "dynamic_axes={'input': {0: 'batch'}}), or 'resstream export SPEC OUT.onnx', which does so.")


#: Operator domains onnxruntime implements (the standard ops, its ML ops and its own contrib ops).
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft", "com.microsoft.nchwc",
                 "org.pytorch.aten")


def check_domains(model, path: str) -> None:
    """:class:`ModelSpecError` naming the first operator of a custom domain (which no onnxruntime here runs).

    Example:
        >>> check_domains(onnx.load("custom.onnx"), "custom.onnx")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        resstream_assert.errors.ModelSpecError: ONNX model 'custom.onnx' uses the custom operator my.ops::Swish ...
    """
    local = {(f.domain, f.name) for f in model.functions}  # functions the file defines itself (dynamo writes some)
    custom = [n for n in model.graph.node if n.domain not in KNOWN_DOMAINS and (n.domain, n.op_type) not in local]
    if custom:
        n = custom[0]
        others = sorted({f"{c.domain}::{c.op_type}" for c in custom} - {f"{n.domain}::{n.op_type}"})
        more = f" (and {', '.join(others[:4])})" if others else ""
        raise ModelSpecError(
            f"ONNX model {path!r} uses the custom operator {n.domain}::{n.op_type} (node {n.name or '?'}){more}, "
            f"from the domain {n.domain!r}, which onnxruntime does not implement. Export the model with standard "
            "ONNX operators only (replace the custom layer, or use the torch model: --resstream-backend torch with "
            "its spec).")
