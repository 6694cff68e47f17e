"""Mix ratios and their categories: ``M = O(X_I) / O(X_B)`` in the papers' coded form and the
principled (floored) form, the stimulus-set means they are made of, and the knobs of the measures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The papers' mix band (P1 commit e6f1fbf): 2/3 < M < 3/2.
MIX_BAND = (2 / 3, 3 / 2)
OVERWRITE, MIX, SKIP, UNDEFINED = 0, 1, 2, -1
CATEGORY_NAMES = {OVERWRITE: "overwrite", MIX: "mix", SKIP: "skip"}


@dataclass(frozen=True)
class MeasureOptions:
    """Knobs of the measures (defaults follow the papers where they say).

    Example:
        >>> MeasureOptions(k=5).band
        (0.6666666666666666, 1.5)
    """

    k: int = 9
    band: tuple[float, float] = MIX_BAND
    floor: float = 0.01  # denominators below floor x (99th percentile |response|) are undefined
    seed: int = 0  # for the channel-mismatch null's derangement
    tuning: bool = True  # the I-B tuning correlations (C4); off when only mix ratios are wanted (interventions)


def exemplars(values: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(C, k)`` of the ``k`` images with the highest response per channel (ties: lower index first).

    Example:
        >>> exemplars(np.array([[1., 0.], [3., 2.], [2., 5.]]), 2).tolist()
        [[1, 2], [2, 1]]
    """
    k = min(k, values.shape[0])
    order = np.argsort(-values, axis=0, kind="stable")[:k]
    return order.T.copy()


def mean_over(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per channel ``c``, the mean of ``values[idx[c], c]``: a site's response to channel-specific stimuli.

    ``idx`` entries of ``-1`` are missing stimuli: the mean is over the others, NaN if none.

    Example:
        >>> mean_over(np.array([[1., 0.], [3., 2.]]), np.array([[0, 1], [1, 1]])).tolist()
        [2.0, 2.0]
        >>> mean_over(np.array([[1., 0.], [3., 2.]]), np.array([[0, -1], [-1, -1]])).tolist()
        [1.0, nan]
    """
    if idx.size == 0 or idx.min() >= 0:
        return values[idx, np.arange(values.shape[1])[:, None]].mean(axis=1)
    ok = idx >= 0
    picked = np.where(ok, values[np.maximum(idx, 0), np.arange(values.shape[1])[:, None]], 0.0)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, picked.sum(axis=1) / n, np.nan)


def natural_scale(values: np.ndarray) -> np.ndarray:
    """99th percentile of ``|response|`` per channel over the probe set."""
    return np.percentile(np.abs(values), 99, axis=0)


def categorize(m: np.ndarray, band: tuple[float, float] = MIX_BAND) -> np.ndarray:
    """Overwrite (``M <= lo``), mix (``lo < M < hi``), skip (``M >= hi``), undefined (NaN).

    Example:
        >>> categorize(np.array([0.1, 1.0, 4.0, np.nan, np.inf])).tolist()
        [0, 1, 2, -1, 2]
    """
    lo, hi = band
    out = np.full(m.shape, UNDEFINED, dtype=np.int64)
    out[m <= lo] = OVERWRITE
    out[(m > lo) & (m < hi)] = MIX
    out[m >= hi] = SKIP
    return out


def coded_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """The papers' ``M`` with edge codes (spec §2.3): den <= 0 -> 10, else num <= 0 -> 0; both < 0 undefined.

    Example:
        >>> coded_ratio(np.array([2., 1., -1., -1.]), np.array([1., 0., 2., -1.])).tolist()
        [2.0, 10.0, 0.0, nan]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(den <= 0, 10.0, np.where(num <= 0, 0.0, num / den))
    return np.where((num < 0) & (den < 0), np.nan, m)


def principled_ratio(num: np.ndarray, den: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """``max(num, eps) / den`` where ``den >= eps``, NaN (undefined) where the denominator is below the floor.

    Example:
        >>> principled_ratio(np.array([2., -1., 1.]), np.array([1., 2., 0.001]), np.array([.01, .01, .01])).tolist()
        [2.0, 0.005, nan]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den >= eps, np.maximum(num, eps) / den, np.nan)


def _silent(values: np.ndarray, ref_scale: np.ndarray) -> np.ndarray:
    """Channels whose response does not vary over the probe set (e.g. a zeroed branch)."""
    return np.ptp(values, axis=0) <= 1e-6 * np.maximum(ref_scale, 1e-12)


def mix_ratios(i_site: np.ndarray, b_site: np.ndarray, o_site: np.ndarray, xi: np.ndarray, xb: np.ndarray,
               floor: float, o_stim: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(coded M, principled M, O(X_I), O(X_B))`` per channel from the output's responses to the stimuli.

    ``i_site``, ``b_site``, ``o_site`` are the probe's ``(N, C)`` responses of I, B and O (they set
    the floor and say which sites are silent); ``xi``/``xb`` are ``(C, k)`` stimulus rows of
    ``o_stim`` (default ``o_site``: the probe's own exemplars).

    Example:
        >>> o = np.array([[4.0], [2.0], [1.0]])  # the output's response to 3 images, one channel
        >>> i, b = np.array([[1.0], [0.0], [0.0]]), np.array([[0.0], [1.0], [0.0]])
        >>> [a.tolist() for a in mix_ratios(i, b, o, np.array([[0]]), np.array([[1]]), floor=0.01)]
        [[2.0], [2.0], [4.0], [2.0]]
    """
    given = o_stim is not None
    o_stim = o_site if o_stim is None else o_stim
    num, den = mean_over(o_stim, xi), mean_over(o_stim, xb)
    scale = natural_scale(o_site)
    coded, principled = coded_ratio(num, den), principled_ratio(num, den, floor * scale)
    # A site with no variation has no preferred stimulus: a silent branch means the output
    # follows the input alone (pure skip), a silent shortcut means pure overwrite. Given
    # stimuli that are missing (failed) stay undefined: never coded.
    silent_b, silent_i = _silent(b_site, scale), _silent(i_site, scale)
    if given:
        has = ~np.isnan(num) & ~np.isnan(den)
        silent_b, silent_i = silent_b & has, silent_i & has
    for arr, code in ((coded, 10.0), (principled, np.inf)):
        arr[silent_b & ~silent_i] = code
        arr[silent_i & ~silent_b] = 0.0
        arr[silent_i & silent_b] = np.nan
    return coded, principled, num, den
