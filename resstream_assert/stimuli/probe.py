"""Probe sets: the images every measure is computed on.

Two sources behind one type (DESIGN.md decision 5):

- ``embedded_probe``: needs no data at all. The synthetic generator's *test* split
  (labeled, objects at 20%-70% of the side) plus an unlabeled slice of natural photographs
  bundled with scikit-image, cropped at seeded positions and scales.
- ``folder_probe``: the user's images, an ImageFolder-like tree (class subfolders, labels
  by sorted folder name, or by a class-index file: :mod:`.class_index`) or a flat folder (unlabeled).

Photographs of any shape are brought to the model's square input by ``resize``: ``crop``
(shorter side to the input size, then the centre square: torchvision's eval transforms, the
default) or ``stretch`` (the whole image squeezed to the square, aspect ratio lost).

A ``ProbeSet`` carries a SHA-256 ``digest`` of its pixels and labels, used as a cache key.

A large embedded probe (over :data:`IN_MEMORY_LIMIT` bytes of pixels, e.g. 10,000 images at 224 px
= 1.5 GB) is rendered once into a raw file under the cache directory and read through a memory map
whose pages are handed back after each batch: it streams, and never sits whole in the process's memory.

This module picks the source (:func:`load_probe`); the sources are :mod:`.embedded` and
:mod:`.photo_probes`, the type :mod:`.probe_set`. Every name of theirs is importable from here.
"""

from __future__ import annotations

from resstream_assert.errors import ProbeError
from resstream_assert.stimuli.embedded import NATURAL_IMAGES, embedded_probe
from resstream_assert.stimuli.photo_probes import (IMAGE_SUFFIXES, MIN_SIDE_FRACTION, RESIZE_POLICIES, SHIPPED,
                                                   SHIPPED_DIR, folder_probe, is_image, shipped_probe, to_rgb)
from resstream_assert.stimuli.probe_set import ProbeSet, release

__all__ = ["IMAGE_SUFFIXES", "IN_MEMORY_LIMIT", "MIN_SIDE_FRACTION", "NATURAL_IMAGES", "RESIZE_POLICIES", "SHIPPED",
           "SHIPPED_DIR", "ProbeSet", "embedded_probe", "folder_probe", "is_image", "load_probe", "release",
           "shipped_probe", "to_rgb"]

#: Pixels beyond this many bytes are kept on disk (a memory-mapped file) instead of in memory.
IN_MEMORY_LIMIT = 256 * 2**20


def load_probe(source: str | None, n: int, size: int, seed: int = 0, resize: str = "crop",
               class_index: str | None = None) -> ProbeSet:
    """``None`` or ``"embedded"`` gives the embedded probe, a name in :data:`SHIPPED` that shipped
    set; anything else is a folder path. ``resize`` and ``class_index`` apply to photographs (a shipped set
    or a folder; the embedded images are drawn square at ``size``).

    Example:
        >>> len(load_probe(None, n=16, size=32)), len(load_probe("cifar10", n=16, size=32, resize="stretch"))
        (16, 16)
    """
    if resize not in RESIZE_POLICIES:
        raise ProbeError(f"resize {resize!r}: use one of {', '.join(RESIZE_POLICIES)}")
    if source is None or str(source) == "embedded":
        if n * 3 * size * size > IN_MEMORY_LIMIT:  # e.g. 10,000 images at 224 px: streamed from disk
            from resstream_assert.cache_dir import default_cache_dir

            return embedded_probe(n=n, size=size, seed=seed, disk=default_cache_dir() / "probes")
        return embedded_probe(n=n, size=size, seed=seed)
    if str(source) in SHIPPED:
        return shipped_probe(str(source), n=n, size=size, seed=seed, resize=resize, class_index=class_index)
    return folder_probe(source, n=n, size=size, seed=seed, resize=resize, class_index=class_index)
