"""Random probe sets for hypothesis: seeded noise, constants, gradients and checkerboards, with labels.

The public names are re-exported by :mod:`resstream_assert.strategies`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

from resstream_assert.strategies.networks import int_range

__all__ = ["ProbeArrays", "probe_sets"]


class ProbeArrays(NamedTuple):
    """Arguments for ``ProbeSet.build(*arrays)``: uint8 images (N, 3, H, W), labels (-1 = unlabeled), names,
    class names."""

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    class_names: tuple[str, ...]


def _image(kind: str, size: int, rng: np.random.Generator, value: int) -> np.ndarray:
    if kind == "constant":
        return np.full((3, size, size), value, np.uint8)
    if kind == "gradient":
        ramp = np.linspace(0, 255, size, dtype=np.float64)
        across, down = ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1)
        return np.stack([across, down, 255 - across]).round().astype(np.uint8)
    if kind == "checker":
        cell = int(rng.integers(1, max(2, size // 2)))
        grid = (np.add.outer(np.arange(size) // cell, np.arange(size) // cell) % 2).astype(bool)
        colors = rng.integers(0, 256, (2, 3, 1, 1), dtype=np.uint8)
        return np.where(grid[None], colors[0], colors[1]).astype(np.uint8)
    return rng.integers(0, 256, (3, size, size), dtype=np.uint8)  # noise


@st.composite
def probe_sets(draw, *, n_images: int | tuple[int, int] = (1, 8), sizes: int | tuple[int, int] = (16, 32),
               num_classes: int | tuple[int, int] = (1, 10), min_unlabeled: int = 1) -> ProbeArrays:
    """A strategy of :class:`ProbeArrays` for ``resstream_assert.stimuli.probe.ProbeSet.build``.

    Each image is seeded noise, a constant (edge values 0 and 255 are favoured), an RGB gradient
    or a random two-colour checkerboard. At least ``min(min_unlabeled, N)`` labels are -1; the
    others are in ``[0, num_classes)``.

    Example:
        >>> from resstream_assert.stimuli.probe import ProbeSet
        >>> probe = ProbeSet.build(*probe_sets(n_images=4, sizes=16).example())
        >>> probe.images.shape, probe.images.dtype.name, bool((probe.labels == -1).any())
        ((4, 3, 16, 16), 'uint8', True)
    """
    n_lo, n_hi = int_range(n_images, "n_images")
    z_lo, z_hi = int_range(sizes, "sizes")
    k_lo, k_hi = int_range(num_classes, "num_classes")
    n, size, k = draw(st.integers(n_lo, n_hi)), draw(st.integers(z_lo, z_hi)), draw(st.integers(k_lo, k_hi))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = draw(st.lists(st.sampled_from(("noise", "constant", "gradient", "checker")), min_size=n, max_size=n))
    values = draw(st.lists(st.one_of(st.sampled_from((0, 255)), st.integers(0, 255)), min_size=n, max_size=n))
    images = np.stack([_image(kind, size, rng, v) for kind, v in zip(kinds, values, strict=True)])
    n_unlabeled = draw(st.integers(min(max(min_unlabeled, 0), n), n))
    order = draw(st.permutations(range(n)))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), np.int64)
    labels[list(order[:n_unlabeled])] = -1
    return ProbeArrays(images, labels, tuple(f"probe/{i}" for i in range(n)), tuple(f"class{j}" for j in range(k)))
