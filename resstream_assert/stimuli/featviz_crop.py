"""Crop the optimised image to what a block's centre units see: the same objective for a fraction of the work.

The centre unit of a site depends only on the input pixels of its receptive field. When that
field is smaller than the image, the forward (and backward) of feature visualization can run
on the field alone: the random transform is sampled only at the field's output pixels (a slice
of the ``affine_grid``, so the same numbers as transforming the whole image and cropping), and
the margin the jitter, scale and rotation need is already there, because the sampling grid
points into the whole parameterised image. Only the unit's value and its gradient matter, and
neither changes.

One window per block (the union of its sites' fields), so an image is cropped the same way
whether it is optimised alone or in a chunk with other targets of its block. The field is
found from the graph itself, not from module names: an input band set to NaN that reaches a
centre unit is inside its field (NaN survives every multiply, including by zero, and ReLU; a
convolution algorithm that mixes neighbours, e.g. Winograd, can only widen the field, which
is safe). The window's offset is a multiple of the block's total stride, so the cropped
network samples the same grid; the cropped forward is then checked against the whole one on
random images, and a block that fails the check (a global op before the site, input-size
dependent padding) is not cropped.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from resstream_assert.discovery.residual_map import SITES
from resstream_assert.stimuli.featviz_graph import site_graph

#: Below this fraction of the image's pixels a crop is used (near the whole image it does not pay).
CROP_BELOW = 0.8
#: Cropped vs whole forward on random images: centre units agree to this (float reassociation only).
CHECK_RTOL, CHECK_ATOL = 1e-4, 1e-5

_WINDOWS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Window:
    """Input rows ``r0:r1`` and columns ``c0:c1`` kept; ``centre[site]`` = (row, col) of the site's
    centre unit in the cropped forward's map.

    Example:
        >>> w = Window(0, 8, 0, 8, {"branch_out": (1, 1)})
        >>> w.pixels
        64
    """

    r0: int
    r1: int
    c0: int
    c1: int
    centre: dict

    @property
    def pixels(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)


def block_window(module: nn.Module, block: int, size: int, root: nn.Module | None = None) -> Window | None:
    """The crop of ``block`` at ``size`` px (``None``: the whole image; no gain, or the check failed).
    ``root``: the model's copy to run (e.g. on a device; default ``module``); memoised per module,
    block, size and the root's device.

    Example:
        >>> import torchvision
        >>> w = block_window(torchvision.models.resnet18().eval(), 1, 224)
        >>> (w.r0, w.r1, w.c0, w.c1), w.centre["resid_sum"]
        ((88, 136, 88, 136), (6, 6))
    """
    root = module if root is None else root
    dev = next(iter(root.parameters()), torch.zeros(())).device
    memo = _WINDOWS.setdefault(module, {})
    key = (block, size, str(dev))
    if key not in memo:
        memo[key] = _find_window(module, root, block, size, dev)
    return memo[key]


def _find_window(module: nn.Module, root: nn.Module, block: int, size: int, dev: torch.device) -> Window | None:
    sites = [s for s in SITES if s != "resid_pre"]
    gm = site_graph(module, [(block, s) for s in sites], root=root)
    with torch.no_grad():
        shapes = [tuple(o.shape[2:]) for o in gm(torch.zeros(1, 3, size, size, device=dev))]
    rows = _extent(gm, size, dev, shapes, axis=2)
    cols = _extent(gm, size, dev, shapes, axis=3)
    if rows is None or cols is None:
        return None
    jumps = [2 ** round(math.log2(size / max(1, min(h, w)))) for h, w in shapes]
    jump = max(jumps)
    r0, r1 = _align(*rows, jump, size)
    c0, c1 = _align(*cols, jump, size)
    if (r1 - r0) * (c1 - c0) >= CROP_BELOW * size * size:
        return None
    centre = {s: (h // 2 - r0 // j, w // 2 - c0 // j) for s, (h, w), j in zip(sites, shapes, jumps)}
    window = Window(r0, r1, c0, c1, centre)
    return window if _agrees(gm, window, sites, size, dev) else None


def _align(lo: int, hi: int, jump: int, size: int) -> tuple[int, int]:
    """[lo, hi) widened to start on the stride grid and span whole strides, within the image."""
    start = (lo // jump) * jump
    return start, min(size, start + -(-(hi - start) // jump) * jump)


def _centres_nan(gm, x: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Per image: does any centre unit of any site read NaN?"""
    with torch.no_grad():
        outs = gm(x)
    hit = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for o, (h, w) in zip(outs, shapes):
        hit |= torch.isnan(o[:, :, h // 2, w // 2].float()).any(1)
    return hit


def _extent(gm, size: int, dev: torch.device, shapes, axis: int) -> tuple[int, int] | None:
    """[first, last + 1) of the input rows (axis 2) or columns (3) the centre units depend on.

    Two binary searches (bands from the start and from the end set to NaN), run together."""
    lo_ok, lo_bad = 0, size + 1  # band [0, t): t <= lo_ok leaves the centres clean, t >= lo_bad does not
    hi_ok, hi_bad = size, -1  # band [t, size): t >= hi_ok clean, t <= hi_bad not
    while lo_bad - lo_ok > 1 or hi_ok - hi_bad > 1:
        t_lo, t_hi = (lo_ok + lo_bad) // 2, (hi_ok + hi_bad + 1) // 2
        x = torch.zeros(2, 3, size, size, device=dev)
        x[0].narrow(axis - 1, 0, min(t_lo, size)).fill_(float("nan"))
        x[1].narrow(axis - 1, max(t_hi, 0), size - max(t_hi, 0)).fill_(float("nan"))
        hit = _centres_nan(gm, x, shapes).tolist()
        if lo_bad - lo_ok > 1:
            lo_ok, lo_bad = (lo_ok, t_lo) if hit[0] else (t_lo, lo_bad)
        if hi_ok - hi_bad > 1:
            hi_ok, hi_bad = (hi_ok, t_hi) if hit[1] else (t_hi, hi_bad)
    if lo_ok >= size or hi_ok <= 0:  # no pixel reaches the centres (a constant unit): nothing to crop to
        return None
    return lo_ok, hi_ok


def _agrees(gm, w: Window, sites: Sequence[str], size: int, dev: torch.device) -> bool:
    """The cropped forward's centre units equal the whole forward's on random images (to float rounding)."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    with torch.no_grad():
        full, part = gm(x), gm(x[:, :, w.r0:w.r1, w.c0:w.c1])
    for s, a, b in zip(sites, full, part):
        cy, cx = w.centre[s]
        if not (0 <= cy < b.shape[2] and 0 <= cx < b.shape[3]):
            return False
        ref, got = a[:, :, a.shape[2] // 2, a.shape[3] // 2], b[:, :, cy, cx]
        if not torch.allclose(got, ref, rtol=CHECK_RTOL, atol=CHECK_ATOL * float(ref.abs().max().clamp(min=1))):
            return False
    return True
