"""A deterministic, fast generator of labeled shape / texture images at varied scales.

Each image holds one object whose *family* is the label (a shape such as a disk or a
star, or a texture patch such as stripes) on a cluttered background (smooth colour noise,
pixel noise, random lines and small blobs). Objects span 20%-70% of the image side
(a 3.5x range, log-uniform), at random positions, rotations and colours, so a network
trained on it must recognise the family across scales: the property the scale claims
(paper-claims C5-C10) probe.

Every image is a pure function of ``(seed, split, index, size)``: its random stream is a
``numpy.random.Generator`` seeded from a SHA-256 of those values, never the global RNG.
Train and test use different streams (the split name is part of the hash), so they are
disjoint by construction. Drawing is vectorised numpy on coordinate grids with
anti-aliased (signed-distance) masks, directly at the requested size.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

#: Object families; the label of an image is the index of its family here.
CLASS_NAMES: tuple[str, ...] = (
    "disk", "square", "triangle", "star", "cross",
    "ring", "hexagon", "stripes-patch", "checker-patch", "dots-patch",
)
SPLITS = ("train", "test")
#: Object diameter as a fraction of the image side (log-uniform in this range).
SCALE_RANGE = (0.2, 0.7)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    digest = hashlib.sha256(f"resstream-synth/{int(seed)}/{split}/{int(index)}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel-centre coordinates in pixel units; cached because every image of a size reuses them.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return yy, xx


@lru_cache(maxsize=8)
def _interp_matrix(size: int, n: int) -> np.ndarray:
    # (size, n) bilinear upsampling matrix: smooth background = M @ coarse @ M.T per channel.
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * (n - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, n - 2)
    frac = pos - lo
    m = np.zeros((size, n), np.float32)
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] += frac
    return m


def _coverage(dist: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a signed distance in pixels (negative = inside)."""
    return np.clip(0.5 - dist, 0.0, 1.0)


def _polygon_sdf(x: np.ndarray, y: np.ndarray, n: int, apothem: float) -> np.ndarray:
    # Max over the n half-planes; exact on edges, slightly rounded at corners (fine for AA).
    angles = np.arange(n, dtype=np.float32) * (2 * np.pi / n)
    proj = x[None] * np.cos(angles)[:, None, None] + y[None] * np.sin(angles)[:, None, None]
    return proj.max(axis=0) - apothem


def _star_sdf(x: np.ndarray, y: np.ndarray, points: int, outer: float, inner: float) -> np.ndarray:
    # Fold the plane into one half-wedge, then signed distance to the edge tip -> inner vertex.
    wedge = np.pi / points
    rho = np.hypot(x, y)
    phi = np.abs((np.arctan2(y, x) + wedge) % (2 * wedge) - wedge)
    px, py = rho * np.cos(phi), rho * np.sin(phi)
    ax, ay = outer, 0.0
    bx, by = inner * np.cos(wedge), inner * np.sin(wedge)
    ex, ey = bx - ax, by - ay
    return ((px - ax) * ey - (py - ay) * ex) / np.hypot(ex, ey)


def _shape_alpha(label: int, x: np.ndarray, y: np.ndarray, r: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Coverage of the object (and, for texture patches, of its second colour)."""
    name = CLASS_NAMES[label]
    if name == "disk":
        return _coverage(np.hypot(x, y) - r), None
    if name == "square":
        return _coverage(_polygon_sdf(x, y, 4, r * 0.7071)), None
    if name == "triangle":
        return _coverage(_polygon_sdf(x, y, 3, r * 0.5)), None
    if name == "hexagon":
        return _coverage(_polygon_sdf(x, y, 6, r * 0.866)), None
    if name == "star":
        return _coverage(_star_sdf(x, y, 5, r, r * rng.uniform(0.38, 0.5))), None
    if name == "cross":
        w = r * rng.uniform(0.22, 0.32)
        ax, ay = np.abs(x), np.abs(y)
        d = np.minimum(np.maximum(ax - w, ay - r), np.maximum(ax - r, ay - w))
        return _coverage(d), None
    if name == "ring":
        return _coverage(np.abs(np.hypot(x, y) - r * 0.72) - r * rng.uniform(0.18, 0.28)), None
    # Texture patches: the region is a disk or a square at random, so only the texture names the class.
    if rng.random() < 0.5:
        region = _coverage(np.hypot(x, y) - r)
    else:
        region = _coverage(_polygon_sdf(x, y, 4, r * 0.7071))
    period = r / rng.uniform(1.6, 2.6)  # texture tied to object size, so zooming keeps it intact
    if name == "stripes-patch":
        second = _coverage(np.sin(x * (2 * np.pi / period)) * period / (2 * np.pi))
    elif name == "checker-patch":
        s = np.sin(x * (2 * np.pi / period)) * np.sin(y * (2 * np.pi / period))
        second = _coverage(s * period / 4)
    else:  # dots-patch
        gx = (x / period) % 1.0 - 0.5
        gy = (y / period) % 1.0 - 0.5
        second = _coverage((np.hypot(gx, gy) - 0.27) * period)
    return region, second


def _random_colour(rng: np.random.Generator, avoid: np.ndarray, step: float) -> np.ndarray:
    # A random hue whose brightness is moved at least `step` away from `avoid`, so objects
    # never vanish into the background; the direction is whichever side has room.
    c = rng.random(3).astype(np.float32)
    base = float(avoid.mean())
    gap = step + float(rng.uniform(0.0, 0.2))
    up = base + gap <= 1.0 and (base - gap < 0.0 or rng.random() < 0.5)
    target = base + gap if up else base - gap
    c = c - c.mean() + target
    # Squeeze the hue (not the brightness) back into [0, 1].
    spread = np.abs(c - target).max()
    room = min(target, 1.0 - target)
    if spread > room:
        c = target + (c - target) * (room / spread)
    return np.clip(c, 0, 1).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _grid(size)
    m = _interp_matrix(size, 5)
    coarse = rng.random((3, 5, 5)).astype(np.float32)
    img = np.einsum("hi,cij,wj->hwc", m, coarse, m, optimize=True)
    img = 0.25 + 0.5 * img * rng.uniform(0.4, 1.0) + rng.uniform(-0.2, 0.2)
    # Clutter lines: distance of every pixel to k segments at once.
    k = int(rng.integers(2, 6))
    p0 = rng.random((k, 2)).astype(np.float32) * size
    ang = rng.uniform(0, np.pi, k).astype(np.float32)
    length = rng.uniform(0.2, 0.8, k).astype(np.float32) * size
    d = np.stack([np.cos(ang), np.sin(ang)], 1)
    rx, ry = xx[None] - p0[:, 0, None, None], yy[None] - p0[:, 1, None, None]
    t = np.clip(rx * d[:, 0, None, None] + ry * d[:, 1, None, None], 0, length[:, None, None])
    dist = np.hypot(rx - t * d[:, 0, None, None], ry - t * d[:, 1, None, None])
    width = rng.uniform(0.006, 0.02, k).astype(np.float32)[:, None, None] * size
    alpha = _coverage(dist - width) * rng.uniform(0.4, 0.9, k).astype(np.float32)[:, None, None]
    colours = rng.random((k, 3)).astype(np.float32)
    for j in range(k):
        img += alpha[j, ..., None] * (colours[j] - img)
    # Small elongated blobs, well under the smallest object size.
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.random(2) * size
        a = rng.uniform(0.03, 0.08) * size
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = (-(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)) * rng.uniform(1.5, 3.0)
        blob = _coverage(np.hypot(u, v) - a)
        img += (blob * rng.uniform(0.4, 0.9))[..., None] * (rng.random(3).astype(np.float32) - img)
    return img


def render(index: int, split: str = "train", size: int = 96,
           seed: int = 0) -> tuple[np.ndarray, int, float]:
    """Render one image; a pure function of its arguments.

    Returns ``(image (size, size, 3) uint8, label, object_scale)`` where ``object_scale`` is
    the object's diameter as a fraction of the image side. Labels cycle with the index, so
    any ``n`` consecutive images are class-balanced.

    Example:
        >>> img, label, scale = render(3, "test", size=64)
        >>> img.shape, CLASS_NAMES[label]
        ((64, 64, 3), 'star')
    """
    rng = _rng(seed, split, index)
    label = int(index) % len(CLASS_NAMES)
    img = _background(rng, size)
    lo, hi = SCALE_RANGE
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    r = 0.5 * scale * size
    # Keep the centre far enough in that at least ~85% of the object stays in frame.
    margin = 0.7 * r
    cx, cy = rng.uniform(margin, size - margin, 2)
    th = rng.uniform(0, 2 * np.pi)
    yy, xx = _grid(size)
    x = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    y = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    alpha, second = _shape_alpha(label, x, y, r, rng)
    # Contrast against the background *under the object*, not the whole image's mean.
    under = (alpha[..., None] * img).sum((0, 1)) / max(float(alpha.sum()), 1.0)
    colour = _random_colour(rng, under, 0.3)
    # A mild linear shading gradient across the object, so "solid" is not pixel-constant.
    shade = 1.0 + rng.uniform(-0.15, 0.15) * (x / max(r, 1.0))
    fill = np.clip(colour[None, None, :] * shade[..., None], 0, 1)
    if second is not None:
        colour2 = _random_colour(rng, colour, 0.3)
        fill = fill + second[..., None] * (colour2 - fill)
    img = img + alpha[..., None] * (fill - img)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.01, 0.05))
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out, label, scale


def make_split(split: str, n: int, size: int = 96,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render images ``0..n-1`` of a split.

    Returns ``(images (n, size, size, 3) uint8, labels (n,) int64, scales (n,) float32)``.

    Example:
        >>> images, labels, scales = make_split("test", 20, size=32)
        >>> images.shape, sorted(set(labels.tolist())) == list(range(len(CLASS_NAMES)))
        ((20, 32, 32, 3), True)
    """
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    scales = np.empty(n, np.float32)
    for i in range(n):
        images[i], labels[i], scales[i] = render(i, split, size, seed)
    return images, labels, scales
