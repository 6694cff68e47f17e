"""Capture responses from a torch model in one forward pass, reduced as they are produced.

The traced graph gets a small *tap* module inserted right after every site's node. A tap
reduces the tensor at once (center unit and spatial mean per channel) before any later
in-place op (``out += identity``, ``ReLU(inplace=True)``) can overwrite it, so nothing is
aliased and memory grows with images x channels, never with feature-map size.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from resstream_assert.capture.memory import Spill, concatenate_shared
from resstream_assert.capture.responses import Responses, compact, site_key
from resstream_assert.discovery.residual_map import SITES, ResidualMap
from resstream_assert.discovery.torch_graph import block_nodes, copy_graph
from resstream_assert.errors import CaptureError
from resstream_assert.loading.spec import IMAGENET_MEAN, IMAGENET_STD
from resstream_assert.loading.torch_model import eval_mode
from resstream_assert.torch_utils import no_tf32


class _Tap(nn.Module):
    """Reduces one feature map to (center, mean) per channel and stores it under several keys."""

    def __init__(self, store: dict, keys: tuple[str, ...], keep_map: bool, storage: str = "float32",
                 keep_mean: bool = True):
        super().__init__()
        self.store, self.keys, self.keep_map, self.storage, self.keep_mean = store, keys, keep_map, storage, keep_mean

    def forward(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise CaptureError(f"site {self.keys[0]} produced a {x.dim()}-D tensor; expected NCHW")
        h, w = x.shape[2], x.shape[3]
        # copy=True matters: indexing returns a view that a later in-place ReLU would overwrite.
        center = x[:, :, h // 2, w // 2].to(device="cpu", dtype=torch.float32, copy=True)
        # contiguous(): a float sum depends on memory order, so a channels-last map (a ConvNeXt
        # branch after its permute) would differ by an ulp from the same values stored NCHW.
        mean = x.contiguous().mean(dim=(2, 3), dtype=torch.float32).cpu()
        full = x.to(device="cpu", dtype=torch.float32, copy=True) if self.keep_map else None
        center, mean = (torch.from_numpy(compact(a.numpy(), self.storage)) for a in (center, mean))
        for key in self.keys:
            self.store["center"].setdefault(key, []).append(center)
            if self.keep_mean:
                self.store["mean"].setdefault(key, []).append(mean)
            if full is not None:
                self.store["maps"].setdefault(key, []).append(full)


class _Edit(nn.Module):
    """Applies ``fn`` to a site's tensor and passes the result on (used for ablations)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def instrument(module: nn.Module, rmap: ResidualMap, sites: Iterable[str] = SITES,
               keep_maps: Iterable[str] = (), edits: dict | None = None,
               storage: str = "float32", reducers: Iterable[str] = ("center", "mean")) -> tuple[fx.GraphModule, dict]:
    """Return a copy of the traced model with taps after each requested site, and its store.

    ``storage`` is how the taps keep their reductions (see :func:`~resstream_assert.capture.responses.compact`).

    ``edits`` maps ``(block_index, site)`` to a tensor function applied to that site's output
    before the rest of the network sees it (taps read the edited value).

    Example:
        >>> gm, store = instrument(model, rmap, sites=("branch_out",))  # doctest: +SKIP
    """
    graph, by_name = copy_graph(module)
    gm = fx.GraphModule(module, graph)
    store: dict[str, dict[str, list]] = {"center": {}, "mean": {}, "maps": {}}
    wanted = set(sites)
    keep = set(keep_maps)
    taps: dict[str, list[str]] = {}
    nodes = block_nodes(module)
    for block in rmap:
        bn = nodes[block.index]
        for site in SITES:
            if site in wanted:
                taps.setdefault(getattr(bn, site), []).append(site_key(block.index, site))
    for (b, site), fn in (edits or {}).items():
        node = by_name[getattr(nodes[b], site)]
        name = f"_rs_edit_{b}_{site}"
        gm.add_submodule(name, _Edit(fn))
        with graph.inserting_after(node):
            new = graph.call_module(name, (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda u: u is not new)  # noqa: B023 (called here)
        by_name[node.name] = new
    for i, (node_name, keys) in enumerate(taps.items()):
        node = by_name[node_name]
        name = f"_rs_tap_{i}"
        keep_map = any(k.split("/", 1)[1] in keep for k in keys)
        gm.add_submodule(name, _Tap(store, tuple(keys), keep_map, storage, "mean" in tuple(reducers)))
        with graph.inserting_after(node):
            graph.call_module(name, (node,))
    graph.lint()
    gm.recompile()
    return gm, store


def normalizer(mean, std, device) -> Callable[[np.ndarray | torch.Tensor], torch.Tensor]:
    """A function mapping a float [0, 1] (B, 3, H, W) batch (array or tensor) to a normalized tensor on ``device``."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return lambda x: (torch.as_tensor(x, dtype=torch.float32, device=device) - m) / s


def capture_torch(loaded, rmap: ResidualMap, batches: Iterable[np.ndarray], *, variant: str = "id",
                  sites: Iterable[str] = SITES, keep_maps: Iterable[str] = (), device: str = "cpu",
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None, edits: dict | None = None,
                  check_faithful: bool = True, progress=None, storage: str = "float32",
                  reducers: Iterable[str] = ("center", "mean"), spill: Spill | None = None) -> Responses:
    """Run ``batches`` (float [0, 1], (B, 3, H, W)) through the model once, capturing every site.

    ``transform`` (e.g. a zoom) is applied to each [0, 1] batch before normalization.
    The first batch is also run through the plain model and the logits compared
    (faithfulness); a mismatch raises :class:`CaptureError`. ``spill`` moves the reductions to disk as they
    come once they grow large (:class:`~resstream_assert.capture.memory.Spill`).

    Example:
        >>> r = capture_torch(loaded, rmap, probe.batches(64))  # doctest: +SKIP
        >>> r.get(0, "branch_out").shape  # doctest: +SKIP
        (512, 64)
    """
    module = loaded.module if hasattr(loaded, "module") else loaded
    with eval_mode(module):  # the user's module keeps its own train/eval state
        if any(m.training for m in module.modules()):
            raise CaptureError("the model has submodules in training mode after eval(); capture needs eval mode")
        return _capture(loaded, module, rmap, batches, variant, sites, keep_maps, device, transform, edits,
                        check_faithful, progress, (storage, tuple(reducers)), spill or Spill(0, None))


def _capture(loaded, module, rmap, batches, variant, sites, keep_maps, device, transform, edits, check_faithful,
             progress, keep, spill: Spill) -> Responses:
    dev = torch.device(device)
    module.to(dev)
    gm, store = instrument(module, rmap, sites, keep_maps, edits, *keep)
    norm = normalizer(getattr(loaded, "mean", IMAGENET_MEAN), getattr(loaded, "std", IMAGENET_STD), dev)
    logits = []
    first = True
    with torch.inference_mode(), no_tf32(dev):
        for batch in batches:
            x = torch.as_tensor(batch, dtype=torch.float32, device=dev)
            if transform is not None:
                x = transform(x)
            x = norm(x)
            y = gm(x)
            if first and check_faithful and not edits:
                # Two images suffice (the graph is per-image), as on onnxruntime: the whole first batch again
                # cost one extra batch per capture and, at 224 px, the run's peak memory.
                _check_faithful(module, x[:2], y[:2])
            first = False
            logits.append(y.float().cpu())
            spill.after_batch({k: store[k] for k in ("center", "mean")}, len(x))
            if progress is not None:
                progress(len(x))
    if first:
        raise CaptureError("capture received no images (the probe set is empty)")
    return _collect(store, variant, torch.cat(logits).numpy(), spill)


def _check_faithful(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    ref = module(x)
    if ref.shape != y.shape:
        raise CaptureError(f"instrumented forward is not faithful: output shape {tuple(y.shape)} differs from the plain "
                           f"model's {tuple(ref.shape)}. The traced graph does not reproduce forward().")
    diff = float((ref.float() - y.float()).abs().max())
    scale = float(ref.float().abs().max()) + 1e-6
    if diff > 1e-4 * scale + 1e-5:
        raise CaptureError(f"instrumented forward is not faithful: logits differ from the plain model's by {diff:.3g} "
                           f"(scale {scale:.3g}). The traced graph does not reproduce forward(); report this model.")


def _collect(store: dict[str, dict[str, list]], variant: str, logits: np.ndarray, spill: Spill) -> Responses:
    # numpy's concatenate promotes: a float32 chunk among float16 ones (a large value) makes the site float32.
    cat = lambda chunks: np.concatenate([c.numpy() for c in chunks])  # noqa: E731
    maps = concatenate_shared(store["maps"], cat)  # whole maps are asked for by name: kept in memory
    return Responses(variant, spill.join("center", store["center"], cat), spill.join("mean", store["mean"], cat),
                     logits, maps)
