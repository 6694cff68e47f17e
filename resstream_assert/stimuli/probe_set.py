"""The :class:`ProbeSet` type: a probe's pixels, labels and names, with a digest of them (a cache key).

A large probe's pixels may be a read-only memory map of a raw file (the embedded probe over
:data:`~resstream_assert.stimuli.probe.IN_MEMORY_LIMIT` bytes): :meth:`ProbeSet.batches` and the
digest hand each chunk's pages back after use (:func:`release`), so such a probe streams and never
sits whole in the process's memory. Where the images come from is :mod:`.probe`.
"""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from resstream_assert.errors import ProbeError


def _mapping(arr: np.ndarray) -> "mmap.mmap | None":
    """The memory map behind ``arr`` (a view of an offset-0 ``np.memmap``), or None for an in-memory array."""
    base: object = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def release(arr: np.ndarray) -> None:
    """Hand the pages of a memory-mapped ``arr`` back to the OS (they stay in the file's page cache); a no-op for
    an in-memory array. Called after each batch, so a streamed probe never becomes resident as a whole."""
    mm = _mapping(arr)
    if mm is None or arr.size == 0:
        return
    root: Any = arr  # walked down .base to the array whose base is the map itself
    while not isinstance(getattr(root, "base", None), mmap.mmap):
        root = root.base
    start = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    lo = start - start % mmap.PAGESIZE
    length = start + arr.nbytes - lo
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, min(length, len(mm) - lo))
    except (AttributeError, OSError, ValueError):  # no madvise on this platform: the pages stay, nothing breaks
        pass


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{images.shape}|{images.dtype}|{labels.dtype}".encode())
    for i in range(0, len(images), 256):  # chunks: a memory-mapped probe is hashed without becoming resident
        chunk = images[i:i + 256]
        h.update(np.ascontiguousarray(chunk).tobytes())
        release(chunk)
    h.update(np.ascontiguousarray(labels.astype("<i8")).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ProbeSet:
    """Images ``(N, 3, H, W)`` uint8 with labels (-1 = unlabeled) and provenance names.

    Example:
        >>> from resstream_assert.stimuli.probe import embedded_probe
        >>> probe = embedded_probe(n=16, size=32)
        >>> len(probe), probe.size, len(probe.labeled())
        (16, 32, 14)
    """

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    class_names: tuple[str, ...]
    digest: str

    @classmethod
    def build(cls, images: np.ndarray, labels: np.ndarray, names: Sequence[str],
              class_names: Sequence[str]) -> "ProbeSet":
        """Make a probe set from arrays, computing its digest.

        Example:
            >>> ProbeSet.build(np.zeros((1, 3, 8, 8), np.uint8), np.array([-1]), ["x"], ()).size
            8
        """
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or images.shape[1] != 3 or not len(labels) == len(images) == len(names):
            raise ProbeError(f"Probe arrays do not fit: images {images.shape} (need N, 3, H, W), "
                             f"{len(labels)} labels, {len(names)} names.")
        return cls(images, labels, tuple(names), tuple(class_names), _digest(images, labels))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Image height in pixels (probe images are square)."""
        return int(self.images.shape[2])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield float32 batches ``(B, 3, H, W)`` in [0, 1], in order.

        Example:
            >>> from resstream_assert.stimuli.probe import embedded_probe
            >>> [b.shape[0] for b in embedded_probe(n=10, size=32).batches(4)]
            [4, 4, 2]
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for i in range(0, len(self), batch_size):
            batch = self.images[i:i + batch_size].astype(np.float32) / np.float32(255)
            release(self.images[i:i + batch_size])
            yield batch

    def subset(self, idx) -> "ProbeSet":
        """The probe set restricted to ``idx`` (indices or a boolean mask), same order as given.

        Example:
            >>> from resstream_assert.stimuli.probe import embedded_probe
            >>> len(embedded_probe(n=10, size=32).subset([0, 2]))
            2
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return ProbeSet.build(self.images[idx], self.labels[idx], [self.names[i] for i in idx],
                              self.class_names)

    def labeled(self) -> "ProbeSet":
        """The images with a label (>= 0).

        Example:
            >>> from resstream_assert.stimuli.probe import embedded_probe
            >>> bool((embedded_probe(n=16, size=32).labeled().labels >= 0).all())
            True
        """
        return self.subset(self.labels >= 0)
