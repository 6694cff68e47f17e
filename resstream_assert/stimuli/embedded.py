"""The built-in probe, which needs no data: the synthetic generator's labeled *test* split plus an
unlabeled slice of natural photographs bundled with scikit-image, cropped at seeded positions and scales.

Kept in memory, or rendered once into a raw file under a directory and read through a memory
map (a large probe: :func:`~resstream_assert.stimuli.probe.load_probe` decides which).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from resstream_assert.errors import ProbeError
from resstream_assert.stimuli.probe_set import ProbeSet, release
from resstream_assert.stimuli.synthetic import CLASS_NAMES, render

#: Photographs shipped inside scikit-image (no download needed).
NATURAL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry",
                  "hubble_deep_field", "retina", "coins", "moon", "brick", "grass", "gravel")


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray | None:
    import skimage.data

    try:
        img = getattr(skimage.data, name)()
    except Exception:  # a missing optional photo only shrinks the natural pool
        return None
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _natural_names() -> list[str]:
    names = [p for p in NATURAL_IMAGES if _photo(p) is not None]
    if not names:
        raise ProbeError("No scikit-image photograph could be loaded for the natural part of the "
                         "embedded probe. Reinstall scikit-image, or pass natural_fraction=0.")
    return names


def _natural_crop(i: int, names: list[str], size: int, seed: int) -> tuple[np.ndarray, str]:
    """The ``i``-th natural crop (HWC uint8) and its name: a seeded position and scale of one photo."""
    from PIL import Image

    name = names[i % len(names)]
    photo = _photo(name)
    assert photo is not None  # names come from _natural_names: photos that loaded
    k = i // len(names)
    digest = hashlib.sha256(f"resstream-natural/{seed}/{name}/{k}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    h, w = photo.shape[:2]
    side = int(round(min(h, w) * rng.uniform(0.3, 1.0)))  # several scales of the same photo
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    # PIL's bilinear resize filters over the whole footprint when shrinking (antialiased).
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR)), f"skimage/{name}/crop{k}"


def _fill(images: np.ndarray, n_syn: int, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Render every image into ``images`` (N, 3, H, W) one at a time; the labels and names."""
    n = len(images)
    labels = np.full(n, -1, np.int64)
    names = [f"synth/test/{i}" for i in range(n_syn)]
    for i in range(n_syn):
        img, labels[i], _ = render(i, "test", size, seed)
        images[i] = img.transpose(2, 0, 1)
        if i % 256 == 255:
            release(images[i - 255:i + 1])
    photos = _natural_names() if n > n_syn else []
    for j in range(n - n_syn):
        crop, name = _natural_crop(j, photos, size, seed)
        images[n_syn + j] = crop.transpose(2, 0, 1)
        names.append(name)
        if j % 256 == 255:
            release(images[n_syn + j - 255:n_syn + j + 1])
    return labels, names


def _on_disk(n: int, size: int, seed: int, n_syn: int, directory: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """The embedded probe as a read-only memory map of a raw uint8 file under ``directory`` (rendered once)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"embedded-v1-{n}x3x{size}x{size}-seed{seed}-synth{n_syn}.u8"
    shape = (n, 3, size, size)
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        out = np.memmap(tmp, np.uint8, "w+", shape=shape)
        _fill(out, n_syn, size, seed)
        out.flush()
        del out
        os.replace(tmp, path)
    labels = np.where(np.arange(n) < n_syn, np.arange(n) % len(CLASS_NAMES), -1).astype(np.int64)
    photos = _natural_names() if n > n_syn else []
    names = [f"synth/test/{i}" for i in range(n_syn)] + [
        f"skimage/{photos[j % len(photos)]}/crop{j // len(photos)}" for j in range(n - n_syn)]
    return np.memmap(path, np.uint8, "r", shape=shape), labels, names


def embedded_probe(n: int = 512, size: int = 96, seed: int = 0,
                   natural_fraction: float = 0.125, disk: str | Path | None = None) -> ProbeSet:
    """The built-in probe: synthetic test images (labeled) + natural photo crops (label -1).

    ``disk``: a directory to keep the pixels in (a raw file, rendered once, memory-mapped and streamed);
    ``None`` keeps them in memory.

    Example:
        >>> p = embedded_probe(n=64, size=32)
        >>> p.images.shape, int((p.labels == -1).sum())
        ((64, 3, 32, 32), 8)
    """
    if n < 1:
        raise ProbeError(f"The embedded probe needs n >= 1 images, got {n}.")
    if not 0.0 <= natural_fraction <= 1.0:
        raise ProbeError(f"natural_fraction must be in [0, 1], got {natural_fraction}.")
    n_syn = n - int(round(n * natural_fraction))
    if disk is not None:
        images, labels, names = _on_disk(n, size, seed, n_syn, Path(disk))
        return ProbeSet.build(images, labels, names, CLASS_NAMES)
    # Written image by image into the final (N, 3, H, W) array: no full-size temporary copies.
    images = np.empty((n, 3, size, size), np.uint8)
    labels, names = _fill(images, n_syn, size, seed)
    return ProbeSet.build(images, labels, names, CLASS_NAMES)
