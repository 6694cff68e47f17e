"""The ONNX backend: load an ``.onnx`` file and capture residual-stream responses with onnxruntime.

Capture adds, for every site tensor, two tiny reduction nodes to an in-memory copy of the
graph (the user's file is never written) and makes only their ``(N, C)`` results graph
outputs:

* spatial mean: ``GlobalAveragePool``;
* center unit ``[H//2, W//2]``: ``MaxPool`` with a 1x1 kernel and stride ``H//2`` (an exact
  copy of the strided grid, whose element ``[1, 1]`` is the center).

Why not return the feature maps and reduce them in numpy: at ``ORT_ENABLE_ALL`` onnxruntime
runs convolutions in the blocked NCHWc layout, and every exposed map then needs a full
layout conversion plus a copy out (measured: ~1.5x a plain run for resnet18 at 224 px);
both ops above have NCHWc kernels, so only ``(N, C)`` values leave the graph. Maps whose
shape cannot be resolved fall back to numpy reduction.

Optimization level: the default ``ORT_ENABLE_ALL``, as in production. Exposed values are
not fused away (spec/ecosystem.md B.4); the first images of every capture are also run
through the plain, un-instrumented session and the outputs compared (faithfulness).

Sessions (plain and instrumented) are cached per model digest and providers, with
``intra_op_num_threads`` = CPUs / pytest-xdist workers so parallel workers do not
oversubscribe the machine.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from resstream_assert.capture.onnx_file import image_input, read_model, value_shapes
from resstream_assert.capture.responses import Responses, site_key
from resstream_assert.discovery.residual_map import SITES, ResidualMap
from resstream_assert.errors import BackendUnavailable, CaptureError, CheckpointError, ModelSpecError

__all__ = ["load_onnx", "to_onnx_backend", "export_onnx", "capture_onnx", "read_model", "plain_session",
           "resolve_providers", "provider_report", "ort_threads"]

_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
            "rocm": "ROCMExecutionProvider", "dml": "DmlExecutionProvider", "coreml": "CoreMLExecutionProvider",
            "openvino": "OpenVINOExecutionProvider"}
_SESSIONS: "OrderedDict[tuple, object]" = OrderedDict()  # (digest, providers, kind...) -> session (+ plan)
_CACHE_LIMIT = 6


def to_onnx_backend(loaded, providers: tuple[str, ...] = ()):
    """Export a torch :class:`LoadedModel` to ONNX (cached on disk) and return it loaded on onnxruntime.

    Example:
        >>> m = to_onnx_backend(load_model("torchvision:resnet18"), ("cpu",))  # doctest: +SKIP
        >>> m.backend, m.meta["exported_from"]  # doctest: +SKIP
        ('onnx', 'torchvision:resnet18')
    """
    from resstream_assert.capture.onnx_export import to_onnx_backend as _impl

    return _impl(loaded, providers)


def export_onnx(loaded, path, **kwargs) -> Path:
    """Write ``loaded`` (a torch model) as an ONNX file; see :func:`resstream_assert.capture.onnx_export.export_onnx`.

    Example:
        >>> export_onnx(load_model("torchvision:resnet18"), "r18.onnx", exporter="dynamo")  # doctest: +SKIP
        PosixPath('r18.onnx')
    """
    from resstream_assert.capture.onnx_export import export_onnx as _impl

    return _impl(loaded, path, **kwargs)


def resolve_providers(requested: Iterable[str] = ()) -> tuple[tuple[str, ...], bool]:
    """The provider list to ask onnxruntime for, and whether the user asked explicitly.

    Short names (``cpu``, ``cuda``, ``tensorrt``, ...) are accepted. Without a request: CUDA
    first when this onnxruntime build has it, then CPU. An explicit provider this build
    does not have raises :class:`BackendUnavailable` (onnxruntime itself would only warn).

    Example:
        >>> resolve_providers(["cpu"])
        (('CPUExecutionProvider',), True)
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    names = tuple(_ALIASES.get(p.strip().lower(), p.strip()) for p in requested if p and p.strip())
    if not names:
        return tuple(p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available), False
    missing = [p for p in names if p not in available]
    if missing:
        raise BackendUnavailable(
            f"onnxruntime execution provider(s) {', '.join(missing)} requested (--resstream-providers), but this "
            f"onnxruntime {ort.__version__} build offers only {', '.join(available)}. Install the matching build "
            "(e.g. onnxruntime-gpu for CUDA) or drop the option to run on CPU.")
    return names, True


def ort_threads() -> int:
    """Intra-op threads per session: ``$RESSTREAM_ORT_THREADS``, else the CPUs divided among xdist workers.

    Example:
        >>> ort_threads() >= 1
        True
    """
    env = os.environ.get("RESSTREAM_ORT_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    return max(1, cpus // workers)


def _options(level=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ORT's warnings (unused initializers, ...) are not the user's business
    opts.intra_op_num_threads = ort_threads()
    opts.inter_op_num_threads = 1
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1) > 1:
        # Spinning threads burn the cores other xdist workers need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = level if level is not None else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def _new_session(source, providers: tuple[str, ...], explicit: bool, path: str):
    import onnxruntime as ort

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the fallback warning; checked explicitly below
            sess = ort.InferenceSession(source, _options(), providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        msg = str(exc)
        if "opset" in msg.lower():
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} cannot run {path!r}: its opset is not supported ({msg[-300:]}). "
                "Upgrade onnxruntime, or export the model again with an older opset "
                "('resstream export SPEC OUT.onnx --opset 18').") from exc
        raise CheckpointError(f"onnxruntime cannot load {path!r} ({type(exc).__name__}: {msg[:400]}). The file may be "
                              "truncated or corrupt, or use operators this onnxruntime does not implement; export it "
                              "again.") from exc
    used = tuple(sess.get_providers())
    if explicit:
        dropped = [p for p in providers if p not in used]
        if dropped:
            raise BackendUnavailable(
                f"onnxruntime was asked for {', '.join(providers)} for {path!r} but the session runs on "
                f"{', '.join(used)} ({', '.join(dropped)} failed to initialise and onnxruntime fell back silently). "
                "Check the CUDA/cuDNN installation, or drop --resstream-providers to run on CPU.")
    return sess


def _remember(key: tuple, value):
    _SESSIONS[key] = value
    _SESSIONS.move_to_end(key)
    while len(_SESSIONS) > _CACHE_LIMIT:
        _SESSIONS.popitem(last=False)
    return value


def plain_session(path: str | Path, providers: Iterable[str] = ()):
    """The un-instrumented onnxruntime session of an ONNX file (cached per file digest and providers).

    Example:
        >>> sess = plain_session("resnet18.onnx", ["cpu"])  # doctest: +SKIP
        >>> sess.get_providers()  # doctest: +SKIP
        ['CPUExecutionProvider']
    """
    _, digest = read_model(path)
    names, explicit = resolve_providers(providers)
    key = (digest, names, "plain")
    if key in _SESSIONS:
        _SESSIONS.move_to_end(key)
        return _SESSIONS[key]
    return _remember(key, _new_session(str(path), names, explicit, str(path)))


def provider_report(providers: Iterable[str] = ()) -> str:
    """One line for the pytest header: the onnxruntime version and the providers a session really gets.

    Example:
        >>> provider_report(["cpu"]).startswith("onnxruntime ")
        True
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    try:
        names, explicit = resolve_providers(providers)
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        used = _new_session(model.SerializeToString(), names, explicit, "<provider probe>").get_providers()
        return f"onnxruntime {ort.__version__}: providers {', '.join(used)} (threads {ort_threads()})"
    except BackendUnavailable as exc:
        return f"onnxruntime {ort.__version__}: providers unavailable: {exc}"


def load_onnx(spec, input_size: int | None = None, providers: tuple[str, ...] = ()):
    """Load an ONNX file as a :class:`~resstream_assert.loading.LoadedModel` (``backend="onnx"``).

    ``input_size`` comes from the graph when its H and W are static, else the argument,
    else 224. Normalization: an ONNX file does not say which mean/std it expects; files
    written by ``resstream export`` carry them in their metadata, others get ImageNet's.

    Example:
        >>> from resstream_assert.loading import ModelSpec
        >>> m = load_onnx(ModelSpec.parse("resnet18.onnx"), None, ("cpu",))  # doctest: +SKIP
        >>> m.backend, m.meta["providers"]  # doctest: +SKIP
        ('onnx', ('CPUExecutionProvider',))
    """
    import json

    from resstream_assert.discovery.onnx_graph import bn_folded
    from resstream_assert.loading import IMAGENET_MEAN, IMAGENET_STD, LoadedModel

    path = str(spec.target)
    if spec.control:
        raise ModelSpecError(f"Model spec {spec.text!r}: negative controls edit a torch model and cannot be applied to "
                             "an ONNX file. Apply the control to the torch model and run it with --resstream-backend "
                             "onnx instead.")
    model, digest = read_model(path)
    inp, dtype = image_input(model, path)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    size = int(input_size or 224)
    if dims[2] and dims[3]:
        if input_size and int(input_size) != dims[2]:
            warnings.warn(f"{path}: the graph's input is fixed at {dims[2]}x{dims[3]} px; ignoring input size "
                          f"{input_size}. Export it again with '--input-size {input_size}' to test that size.",
                          stacklevel=2)
        size = int(dims[2])
    sess = plain_session(path, providers)
    props = {p.key: p.value for p in model.metadata_props}
    out = model.graph.output[0]
    out_dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if len(out_dims) < 2 or not out_dims[-1]:
        out_dims = list(value_shapes(model, inp.name, [out.name], size).get(out.name, (1, 0)))
    num_classes = int(np.prod(out_dims[1:])) if len(out_dims) > 1 else int(out_dims[-1])
    dynamo = any(p.key == "pkg.torch.onnx.name_scopes" for n in model.graph.node for p in n.metadata_props)
    exporter = "dynamo" if dynamo else ("torchscript" if model.producer_name == "pytorch" else "unknown")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    mean = tuple(float(v) for v in props["resstream.mean"].split(",")) if "resstream.mean" in props else IMAGENET_MEAN
    std = tuple(float(v) for v in props["resstream.std"].split(",")) if "resstream.std" in props else IMAGENET_STD
    class_names = tuple(json.loads(props["resstream.class_names"])) if "resstream.class_names" in props else None
    return LoadedModel(
        spec=spec.text, name=props.get("resstream.name") or Path(path).name, backend="onnx", module=None,
        input_size=size, num_classes=num_classes, digest=digest, mean=mean, std=std, class_names=class_names,
        onnx_path=path, meta={"source": "onnx", "exporter": exporter, "bn_folded": bn_folded(model), "opset": opset,
                              "providers": tuple(sess.get_providers()), "input_name": inp.name,
                              "input_dtype": np.dtype(dtype).name, "normalization_from_file": "resstream.mean" in props,
                              "producer": f"{model.producer_name} {model.producer_version}".strip()})


def _tap_session(loaded, model, rmap: ResidualMap, sites: tuple[str, ...], hw: tuple[int, int], in_graph: bool):
    """The instrumented session for inputs of spatial size ``hw`` and its plan (cached)."""
    from onnx import helper

    providers = tuple(loaded.meta.get("providers") or ())
    tensors, derived = _taps(rmap, sites)
    key = (loaded.digest, providers, "tap", hw, tuple(tensors), in_graph)
    if key in _SESSIONS:
        _SESSIONS.move_to_end(key)
        return _SESSIONS[key]
    input_name = loaded.meta.get("input_name") or image_input(model)[0].name
    shapes = value_shapes(model, input_name, tensors, hw)
    inst = type(model)()
    inst.CopyFrom(model)  # in memory only: the user's file is never written
    n_orig = len(inst.graph.output)
    existing = {o.name for o in inst.graph.output}
    plan = []  # (tensor, how, info): "pool" -> (mean, center) outputs | "raw" -> the map | "sum" -> operands
    for i, t in enumerate(tensors):
        shape = shapes.get(t)
        if shape is not None and len(shape) != 4:
            raise CaptureError(f"site tensor {t!r} of {loaded.name} has shape {shape}; expected an NCHW feature map")
        if shape is None or not in_graph:
            if t not in existing:
                inst.graph.output.append(helper.make_empty_tensor_value_info(t))
            plan.append((t, "raw", [o.name for o in inst.graph.output].index(t)))
            continue
        h, w = shape[2], shape[3]
        mean_out, center_out = f"_rs_mean_{i}", f"_rs_center_{i}"
        inst.graph.node.extend([
            helper.make_node("GlobalAveragePool", [t], [mean_out], name=f"_rs_gap_{i}"),
            # kernel 1, stride H//2: rows 0, H//2, ... so element [1] is row H//2 (element [0] when H == 1).
            helper.make_node("MaxPool", [t], [center_out], name=f"_rs_center_{i}", kernel_shape=[1, 1],
                             strides=[max(h // 2, 1), max(w // 2, 1)])])
        inst.graph.output.extend([helper.make_empty_tensor_value_info(mean_out),
                                  helper.make_empty_tensor_value_info(center_out)])
        n = len(inst.graph.output)
        plan.append((t, "pool", (n - 2, n - 1, 1 if h >= 2 else 0, 1 if w >= 2 else 0)))
    plan += [(t, "sum", operands) for t, operands in derived.items()]
    try:
        data = inst.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit
        raise CaptureError(f"{loaded.onnx_path}: the instrumented model is over protobuf's 2 GB limit ({exc}); "
                           "capture this model with the torch backend.") from exc
    sess = _new_session(data, providers, False, str(loaded.onnx_path))
    names = [o.name for o in inst.graph.output]
    return _remember(key, (sess, plan, n_orig, names))


def _taps(rmap: ResidualMap, sites: tuple[str, ...]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Tensors to tap, and resid_sum tensors to derive as skip + branch instead.

    A residual sum that is no other site's tensor is not tapped when both of its operands
    are: the reductions are linear, and leaving the add untapped keeps the graph closer
    to production (measured: ~3% of resnet18's run time at 224 px).
    """
    wanted = [(b, s) for b in rmap for s in sites]
    derived = {}
    if {"skip_out", "branch_out", "resid_sum"} <= set(sites):
        other = {b.sites[s] for b, s in wanted if s != "resid_sum"}
        derived = {b.sites["resid_sum"]: (b.sites["skip_out"], b.sites["branch_out"]) for b in rmap
                   if b.sites["resid_sum"] not in other}
    tensors = list(dict.fromkeys(b.sites[s] for b, s in wanted if b.sites[s] not in derived))
    return tensors, derived


def capture_onnx(loaded, rmap: ResidualMap, batches: Iterable[np.ndarray], *, variant: str = "id",
                 sites: Iterable[str] = SITES, transform: Callable | None = None, progress=None,
                 check_faithful: bool = True, reduce: str = "graph") -> Responses:
    """Run ``batches`` (float [0, 1], (B, 3, H, W)) through onnxruntime once, capturing every site.

    Same reductions and keys as :func:`resstream_assert.capture.torch_fx.capture_torch`:
    the center unit ``[H//2, W//2]`` and the spatial mean per channel. ``transform`` is
    applied to the [0, 1] torch batch before normalization. The first images of the first
    batch are also run through the plain session and the outputs compared; a mismatch
    raises :class:`CaptureError`. ``reduce="numpy"`` returns whole maps from onnxruntime
    and reduces them in numpy (slower; a cross-check of the in-graph reductions).

    Example:
        >>> r = capture_onnx(loaded, rmap, probe.batches(64))  # doctest: +SKIP
        >>> r.get(0, "branch_out").shape  # doctest: +SKIP
        (512, 64)
    """
    if getattr(loaded, "backend", None) != "onnx" or not loaded.onnx_path:
        raise CaptureError("capture_onnx needs an ONNX model (load_model('file.onnx') or backend='onnx'), "
                           f"got {loaded!r}")
    if rmap.backend != "onnx":
        raise CaptureError("capture_onnx needs the ResidualMap of the ONNX graph (discover(onnx_model)); the torch "
                           "map names FX nodes, not ONNX tensors.")
    sites = tuple(sites)
    if reduce not in ("graph", "numpy"):
        raise ValueError(f"reduce must be 'graph' or 'numpy', got {reduce!r}")
    model, _ = read_model(loaded.onnx_path)
    input_name = loaded.meta.get("input_name") or image_input(model)[0].name
    dtype = np.dtype(loaded.meta.get("input_dtype", "float32"))
    mean = np.asarray(loaded.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(loaded.std, np.float32).reshape(1, 3, 1, 1)
    store: dict[str, dict[str, list]] = {"center": {}, "mean": {}}
    logits, first = [], True
    for batch in batches:
        if transform is not None:
            import torch

            batch = transform(torch.as_tensor(np.asarray(batch, np.float32))).cpu().numpy()
        x = ((np.asarray(batch, np.float32) - mean) / std).astype(dtype, copy=False)
        sess, plan, n_orig, names = _tap_session(loaded, model, rmap, sites, (int(x.shape[2]), int(x.shape[3])),
                                                 reduce == "graph")
        try:
            outs = sess.run(names, {input_name: x})
        except Exception as exc:  # noqa: BLE001
            raise CaptureError(f"onnxruntime failed on a batch of shape {x.shape} for {loaded.onnx_path} "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        if first and check_faithful:
            _check_faithful(loaded, input_name, x, outs[:n_orig])
        first = False
        reduced = {}
        for tensor, how, info in plan:
            if how == "pool":
                m_idx, c_idx, kh, kw = info
                n, c = outs[m_idx].shape[:2]
                reduced[tensor] = (outs[c_idx][:, :, kh, kw].astype(np.float32),
                                   outs[m_idx].reshape(n, c).astype(np.float32))
            elif how == "raw":
                fmap = outs[info]
                if fmap.ndim != 4:
                    raise CaptureError(f"site tensor {tensor!r} produced a {fmap.ndim}-D tensor; expected NCHW")
                h, w = fmap.shape[2:]
                reduced[tensor] = (fmap[:, :, h // 2, w // 2].astype(np.float32),
                                   fmap.mean(axis=(2, 3), dtype=np.float32))
        for tensor, how, (skip, branch) in (p for p in plan if p[1] == "sum"):
            # Both reductions are linear: equal to reducing the graph's own add up to float32 rounding
            # (~1e-7 relative; onnxruntime itself rounds it differently when it fuses the add into a conv).
            reduced[tensor] = (reduced[skip][0] + reduced[branch][0], reduced[skip][1] + reduced[branch][1])
        for block in rmap:
            for site in sites:
                center, avg = reduced[block.sites[site]]
                store["center"].setdefault(site_key(block.index, site), []).append(center)
                store["mean"].setdefault(site_key(block.index, site), []).append(avg)
        logits.append(np.asarray(outs[0], np.float32).reshape(len(x), -1))
        if progress is not None:
            progress(len(x))
    if first:
        raise CaptureError("capture received no images (the probe set is empty)")
    center = {k: np.concatenate(v) for k, v in store["center"].items()}
    avg = {k: np.concatenate(v) for k, v in store["mean"].items()}
    return Responses(variant, center, avg, np.concatenate(logits))


def _check_faithful(loaded, input_name: str, x: np.ndarray, outs: list) -> None:
    # Two images suffice (the graph is per-image); re-running the whole first batch would cost
    # a full extra batch per capture (+12% for 8 batches).
    k = min(len(x), 2)
    plain = plain_session(loaded.onnx_path, loaded.meta.get("providers") or ())
    refs = plain.run(None, {input_name: x[:k]})
    for ref, got in zip(refs, outs):
        ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        if got.ndim and got.shape[0] == len(x) and ref.shape[:1] == (k,):
            got = got[:k]
        diff = float(np.abs(ref - got).max()) if ref.size else 0.0
        scale = float(np.abs(ref).max()) + 1e-6 if ref.size else 1.0
        if diff > 1e-4 * scale + 1e-5:
            raise CaptureError(f"instrumented onnxruntime graph is not faithful for {loaded.onnx_path}: outputs differ "
                               f"from the plain session's by {diff:.3g} (scale {scale:.3g}). Capture with the torch "
                               "backend and report this model.")
