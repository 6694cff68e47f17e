"""Stimulus variants: the spec's scale operators S and S^-1, zooms, and non-scale controls.

All variants act on float tensors ``(N, 3, H, W)`` in ``[0, 1]`` and keep the shape.

The papers (paper-claims §2.6) applied S and S^-1 to the *normalized* tensor. We apply
them to ``[0, 1]`` images before normalization instead: crop, bilinear resize, flip and
reflect padding are all linear maps that act on each channel alike and preserve constants
(resize weights sum to 1), so they commute with the per-channel affine normalization
``(x - mean) / std``. The one exception is constant padding (``Sinv_gray``): 0.5 grey in
pixel space is not 0 in normalized space, which is the point of that sensitivity variant
(spec W6). Antialiasing is pinned (``antialias=True``) because torchvision changed its
default between versions (spec §2.6).

``S`` and ``Sinv`` are the papers' operators and are not mirror images of each other: ``S``
upsamples a crop (blur: a 2x bilinear kernel in output pixels) and fills the frame, ``Sinv``
downsamples (sharp: antialiased, 1 output pixel) and reflect-pads the border with mirrored
copies of the content (W6). A test of "the block prefers zooming in to zooming out" on them
measures those differences too. ``S_sym`` / ``Sinv_sym`` are the symmetric pair C6 compares:
both are a grid of ``round(H / 2)`` samples of the content (``S_sym``: the centre half of the
image at its own pixels; ``Sinv_sym``: the whole image, antialiased bilinear resize to that
size), bilinearly upsampled by ``sqrt(2)`` into the centre ``round(H / sqrt(2))`` window of a
mid-grey (0.5, about 0 after normalization) frame. Same kernel, same window, same filler, same
number of samples: the two differ only in the scale of the content, ``sqrt(2)`` in and
``sqrt(2)`` out (ratio 2).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where images are transformed, so the name grammar stays light
    import torch

#: Zoom factors of accuracy-vs-zoom tables and scale-response curves.
ZOOMS: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0)
#: Names with no parameter; ``zoom{z}`` and ``zoomout{z}`` take a factor z in [1, 4].
FIXED_VARIANTS: tuple[str, ...] = ("id", "S", "Sinv", "Sinv_gray", "flip", "shift", "S_sym", "Sinv_sym")
#: The zoom of each side of the symmetric pair (S_sym in, Sinv_sym out).
SYM_ZOOM = math.sqrt(2.0)
_ZOOM_RE = re.compile(r"^(zoom|zoomout)(\d+(?:\.\d+)?)$")


def _valid_names() -> str:
    return ", ".join(FIXED_VARIANTS) + ", zoom{z}, zoomout{z} (z in [1, 4], e.g. zoom1.25)"


def parse_variant(name: str) -> tuple[str, float]:
    """Split a variant name into ``(kind, zoom)``; raise ValueError naming the valid ones.

    Example:
        >>> parse_variant("zoom1.25"), parse_variant("Sinv")
        (('zoom', 1.25), ('zoomout', 2.0))
    """
    if not isinstance(name, str):
        raise ValueError(f"Variant must be a string, got {type(name).__name__}. Valid: {_valid_names()}.")
    if name == "id":
        return "id", 1.0
    if name == "S":
        return "zoom", 2.0
    if name == "Sinv":
        return "zoomout", 2.0
    if name == "Sinv_gray":
        return "zoomout_gray", 2.0
    if name in ("S_sym", "Sinv_sym"):
        return ("zoom_sym" if name == "S_sym" else "zoomout_sym"), SYM_ZOOM
    if name in ("flip", "shift"):
        return name, 1.0
    m = _ZOOM_RE.match(name)
    if m:
        z = float(m.group(2))
        if not 1.0 <= z <= 4.0:
            raise ValueError(f"Variant {name!r}: zoom factor {z:g} is outside [1, 4]. Valid: {_valid_names()}.")
        return m.group(1), z
    raise ValueError(f"Unknown stimulus variant {name!r}. Valid: {_valid_names()}.")


def canonical_variant(name: str) -> tuple[str, float]:
    """The transform a variant name stands for: names with the same one give identical images.

    ``S`` is ``zoom2``, ``Sinv`` is ``zoomout2``, and a zoom by 1 is ``id``; capture runs each
    transform once and shares the responses between its names.

    Example:
        >>> canonical_variant("S") == canonical_variant("zoom2.0"), canonical_variant("zoom1")
        (True, ('id', 1.0))
    """
    kind, z = parse_variant(name)
    if kind in ("zoom", "zoomout") and z == 1.0:
        return "id", 1.0
    return kind, z


def zoom_variant(z: float) -> str:
    """The variant name for a zoom-in by ``z`` (crop the centre, resize back).

    Example:
        >>> zoom_variant(1.25), zoom_variant(2.0)
        ('zoom1.25', 'zoom2')
    """
    name = f"zoom{float(z):g}"
    parse_variant(name)  # validates the range
    return name


def _crop_zoom(images: torch.Tensor, z: float) -> torch.Tensor:
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h / z)), max(1, round(w / z))
    if (ch, cw) == (h, w):
        return images.clone()
    top, left = (h - ch) // 2, (w - cw) // 2
    from torchvision.transforms.v2 import functional as TF

    crop = images[..., top:top + ch, left:left + cw]
    # Upsampling: antialias has no effect, pinned anyway so versions cannot differ.
    return TF.resize(crop, [h, w], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def _reflect_pad(x: torch.Tensor, pads: list[int]) -> torch.Tensor:
    # torch's reflect pad needs pad < size; larger pads mirror repeatedly (as numpy's 'reflect').
    import torch.nn.functional as F

    left, right, top, bottom = pads
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (a - b for a, b in zip((left, right, top, bottom), step))
    return x


def _shrink_pad(images: torch.Tensor, z: float, fill: float | None) -> torch.Tensor:
    h, w = images.shape[-2:]
    sh, sw = max(2, round(h / z)), max(2, round(w / z))
    if (sh, sw) == (h, w):
        return images.clone()
    import torch.nn.functional as F
    from torchvision.transforms.v2 import functional as TF

    small = TF.resize(images, [sh, sw], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    # Odd leftovers go to the bottom/right so the output keeps the input's size exactly.
    top, left = (h - sh) // 2, (w - sw) // 2
    pads = [left, w - sw - left, top, h - sh - top]
    if fill is None:
        return _reflect_pad(small, pads)
    return F.pad(small, pads, mode="constant", value=fill)


def _symmetric(images: torch.Tensor, zoom_in: bool) -> torch.Tensor:
    """One side of the symmetric pair: content samples bilinearly upsampled by SYM_ZOOM into a grey-framed window."""
    from torchvision.transforms.v2 import functional as TF

    h, w = images.shape[-2:]
    sh, sw = max(1, round(h / SYM_ZOOM**2)), max(1, round(w / SYM_ZOOM**2))
    wh, ww = max(1, round(h / SYM_ZOOM)), max(1, round(w / SYM_ZOOM))
    if zoom_in:  # the centre sh x sw pixels, at the image's own resolution
        top, left = (h - sh) // 2, (w - sw) // 2
        samples = images[..., top:top + sh, left:left + sw]
    else:  # the whole image resampled to sh x sw (antialiased: a downsampling)
        samples = TF.resize(images, [sh, sw], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    window = TF.resize(samples, [wh, ww], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    out = images.new_full(images.shape, 0.5)
    top, left = (h - wh) // 2, (w - ww) // 2
    out[..., top:top + wh, left:left + ww] = window
    return out


def _shift(images: torch.Tensor) -> torch.Tensor:
    # Move the content right and down by 1/8 of the side, reflect-filling the uncovered border.
    h, w = images.shape[-2:]
    dy, dx = max(1, round(h / 8)), max(1, round(w / 8))
    padded = _reflect_pad(images, [dx, 0, dy, 0])
    return padded[..., :h, :w].contiguous()


def apply_variant(images: torch.Tensor, variant: str) -> torch.Tensor:
    """Apply one stimulus variant to float images ``(N, 3, H, W)`` in [0, 1]; shape is kept.

    ``id``; ``S`` (zoom in 2x: centre crop of half the side, bilinear resize back);
    ``Sinv`` (zoom out 2x: resize to half, reflect-pad back); ``Sinv_gray`` (same, 0.5 grey
    padding); ``flip`` (horizontal); ``shift`` (1/8 side, reflect fill); ``zoom{z}`` (centre
    crop of side round(H/z), resize back); ``zoomout{z}`` (resize to round(H/z), reflect-pad);
    ``S_sym`` / ``Sinv_sym`` (the symmetric pair: see the module docstring).

    Example:
        >>> import torch
        >>> apply_variant(torch.rand(2, 3, 32, 32), "Sinv").shape
        torch.Size([2, 3, 32, 32])
    """
    kind, z = parse_variant(variant)
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"apply_variant needs float images (N, C, H, W); got {tuple(images.shape)} "
                         f"{images.dtype}. Convert uint8 with x.float() / 255 first.")
    if kind == "id":
        return images
    if kind == "flip":
        return images.flip(-1)
    if kind == "shift":
        return _shift(images)
    if kind in ("zoom_sym", "zoomout_sym"):
        return _symmetric(images, kind == "zoom_sym")
    if kind == "zoom":
        return _crop_zoom(images, z)
    if kind == "zoomout":
        return _shrink_pad(images, z, None)
    return _shrink_pad(images, z, 0.5)  # zoomout_gray
