"""Capture with onnxruntime: residual-stream responses of an ONNX model, reduced inside the graph.

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

Sessions come from :mod:`resstream_assert.loading.ort_session` (cached per model digest,
providers and plan; a silent provider fallback is an error there).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from resstream_assert.capture.memory import Spill
from resstream_assert.capture.responses import Responses, compact, site_key
from resstream_assert.discovery.residual_map import SITES, ResidualMap
from resstream_assert.errors import CaptureError
from resstream_assert.loading.onnx_file import image_input, read_model, value_shapes
from resstream_assert.loading.ort_session import cached, new_session, plain_session, remember

__all__ = ["capture_onnx"]

def _tap_session(loaded, model, rmap: ResidualMap, sites: tuple[str, ...], hw: tuple[int, int], in_graph: bool):
    """The instrumented session for inputs of spatial size ``hw`` and its plan (cached)."""
    from onnx import helper

    providers = (loaded.onnx.providers if loaded.onnx else ())
    tensors, derived = _taps(rmap, sites)
    key = (loaded.digest, providers, "tap", hw, tuple(tensors), in_graph)
    hit = cached(key)
    if hit is not None:
        return hit
    input_name = loaded.onnx.input_name if loaded.onnx else image_input(model)[0].name
    shapes = value_shapes(model, input_name, tensors, hw)
    inst = type(model)()
    inst.CopyFrom(model)  # in memory only: the user's file is never written
    n_orig = len(inst.graph.output)
    existing = {o.name for o in inst.graph.output}
    plan: list[tuple[str, str, Any]] = []  # (tensor, how, info): "pool" -> (mean, center) outputs | "raw" -> the map | "sum" -> operands
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
    sess = new_session(data, providers, False, str(loaded.onnx_path))
    names = [o.name for o in inst.graph.output]
    return remember(key, (sess, plan, n_orig, names))


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


def _check_capturable(loaded, rmap: ResidualMap, reduce: str) -> None:
    """Refuse what capture_onnx cannot run: a model that is not ONNX, a torch map, an unknown ``reduce``."""
    if getattr(loaded, "backend", None) != "onnx" or not loaded.onnx_path:
        raise CaptureError("capture_onnx needs an ONNX model (load_model('file.onnx') or backend='onnx'), "
                           f"got {loaded!r}")
    if rmap.backend != "onnx":
        raise CaptureError("capture_onnx needs the ResidualMap of the ONNX graph (discover(onnx_model)); the torch "
                           "map names FX nodes, not ONNX tensors.")
    if reduce not in ("graph", "numpy"):
        raise ValueError(f"reduce must be 'graph' or 'numpy', got {reduce!r}")


def _model_input(batch: np.ndarray, transform: Callable | None, mean: np.ndarray, std: np.ndarray,
                 dtype: np.dtype) -> np.ndarray:
    """One [0, 1] batch as the graph's input: ``transform`` (on a torch tensor), then normalised, in ``dtype``.

    Example:
        >>> x = _model_input(np.ones((1, 3, 2, 2)), None, np.full((1, 3, 1, 1), 0.5, np.float32),
        ...                  np.full((1, 3, 1, 1), 0.25, np.float32), np.dtype("float32"))
        >>> float(x.max()), x.dtype
        (2.0, dtype('float32'))
    """
    if transform is not None:
        import torch

        batch = transform(torch.as_tensor(np.asarray(batch, np.float32))).cpu().numpy()
    return ((np.asarray(batch, np.float32) - mean) / std).astype(dtype, copy=False)


def _reduce(plan: list, outs: list, storage: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each tapped tensor's (center, mean) per channel from the session's outputs, stored as ``storage``.

    ``pool`` entries read the in-graph reductions, ``raw`` ones reduce the whole map in numpy, ``sum``
    ones add their two operands' reductions (a residual sum left untapped).

    Example:
        >>> fmap = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
        >>> center, mean = _reduce([("t", "raw", 0)], [fmap], "float32")["t"]
        >>> center.shape, float(center[0, 0]), float(mean[0, 0])
        ((2, 3), 10.0, 7.5)
    """
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
    for tensor, _how, (skip, branch) in (p for p in plan if p[1] == "sum"):
        # Both reductions are linear: equal to reducing the graph's own add up to float32 rounding
        # (~1e-7 relative; onnxruntime itself rounds it differently when it fuses the add into a conv).
        reduced[tensor] = (reduced[skip][0] + reduced[branch][0], reduced[skip][1] + reduced[branch][1])
    # Stored per batch (a tensor tapped under several keys stays one object, so sites keep sharing it).
    return {t: (compact(c, storage), compact(m, storage)) for t, (c, m) in reduced.items()}


def _store(store: dict[str, dict[str, list]], reduced: dict[str, tuple[np.ndarray, np.ndarray]], rmap: ResidualMap,
           sites: tuple[str, ...], reducers: Iterable[str]) -> None:
    """Append one batch's reductions to ``store`` under each block's site keys (means only when asked for)."""
    for block in rmap:
        for site in sites:
            center, avg = reduced[block.sites[site]]
            store["center"].setdefault(site_key(block.index, site), []).append(center)
            if "mean" in reducers:
                store["mean"].setdefault(site_key(block.index, site), []).append(avg)


def capture_onnx(loaded, rmap: ResidualMap, batches: Iterable[np.ndarray], *, variant: str = "id",
                 sites: Iterable[str] = SITES, transform: Callable | None = None, progress=None,
                 check_faithful: bool = True, reduce: str = "graph", storage: str = "float32",
                 reducers: Iterable[str] = ("center", "mean"), spill: Spill | None = None) -> Responses:
    """Run ``batches`` (float [0, 1], (B, 3, H, W)) through onnxruntime once, capturing every site.

    Same reductions and keys as :func:`resstream_assert.capture.torch_fx.capture_torch`:
    the center unit ``[H//2, W//2]`` and the spatial mean per channel. ``transform`` is
    applied to the [0, 1] torch batch before normalization. The first images of the first
    batch are also run through the plain session and the outputs compared; a mismatch
    raises :class:`CaptureError`. ``reduce="numpy"`` returns whole maps from onnxruntime
    and reduces them in numpy (slower; a cross-check of the in-graph reductions). ``spill`` moves the
    reductions to disk as they come once they grow large (:class:`~resstream_assert.capture.memory.Spill`).

    Example:
        >>> r = capture_onnx(loaded, rmap, probe.batches(64))  # doctest: +SKIP
        >>> r.get(0, "branch_out").shape  # doctest: +SKIP
        (512, 64)
    """
    _check_capturable(loaded, rmap, reduce)
    sites = tuple(sites)
    model, _ = read_model(loaded.onnx_path)
    input_name = loaded.onnx.input_name if loaded.onnx else image_input(model)[0].name
    dtype = np.dtype(loaded.onnx.input_dtype if loaded.onnx else "float32")
    mean = np.asarray(loaded.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(loaded.std, np.float32).reshape(1, 3, 1, 1)
    store: dict[str, dict[str, list]] = {"center": {}, "mean": {}}
    spill = spill or Spill(0, None)
    logits, first = [], True
    for batch in batches:
        x = _model_input(batch, transform, mean, std, dtype)
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
        _store(store, _reduce(plan, outs, storage), rmap, sites, reducers)
        logits.append(np.asarray(outs[0], np.float32).reshape(len(x), -1))
        spill.after_batch(store, len(x))
        if progress is not None:
            progress(len(x))
    if first:
        raise CaptureError("capture received no images (the probe set is empty)")
    return Responses(variant, spill.join("center", store["center"], np.concatenate),
                     spill.join("mean", store["mean"], np.concatenate), np.concatenate(logits))


def _check_faithful(loaded, input_name: str, x: np.ndarray, outs: list) -> None:
    # Two images suffice (the graph is per-image); re-running the whole first batch would cost
    # a full extra batch per capture (+12% for 8 batches).
    k = min(len(x), 2)
    plain = plain_session(loaded.onnx_path, loaded.digest, loaded.onnx.providers if loaded.onnx else ())
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
