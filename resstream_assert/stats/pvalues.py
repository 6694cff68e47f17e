"""p-values from null draws, multiple-comparison adjustment, and the chance check before lesions.

The conventions every test here follows are in :mod:`resstream_assert.stats`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from numpy.typing import ArrayLike, NDArray

from resstream_assert.stats.effects import as_1d, check_alternative, perm_pvalue
from resstream_assert.errors import DegenerateDataError


def empirical_pvalue(observed: float, null_samples: ArrayLike, *, alternative: str = "greater") -> float:
    """Permutation-style p-value of ``observed`` against null draws (NaN draws dropped):
    ``(1 + #{null >= observed}) / (N + 1)`` for ``"greater"``, ``<=`` for ``"less"``;
    ``"two-sided"`` is ``min(1, 2 * min(greater, less))``. A NaN observation, or no non-NaN
    null draw, raises DegenerateDataError.

    >>> empirical_pvalue(5.0, [1.0, 2.0, 6.0])
    0.5
    """
    check_alternative(alternative)
    null = as_1d(null_samples, "null_samples")
    null = null[~np.isnan(null)]
    if null.size == 0 or math.isnan(observed):
        raise DegenerateDataError("empirical_pvalue needs a non-NaN observation and >= 1 null draw")
    ge = perm_pvalue(int(np.count_nonzero(null >= observed)), null.size)
    le = perm_pvalue(int(np.count_nonzero(null <= observed)), null.size)
    return {"greater": ge, "less": le, "two-sided": min(1.0, 2 * min(ge, le))}[alternative]


def sequential_pvalue(exceed: ArrayLike, n_max: int, h: int) -> tuple[float, int]:
    """Besag & Clifford's (1991) sequential Monte-Carlo p-value, and how many null draws it used.

    ``exceed[i]`` says whether the i-th null draw (in the order drawn) was as or more extreme
    than the observation. The test stops at the ``h``-th exceedance, at draw ``n``, with
    ``p = h / n``; if fewer than ``h`` of ``n_max`` draws exceed, ``p = (1 + k) / (n_max + 1)``
    as for the fixed-size test. Either way ``P(p <= u) <= u`` under the null, and a small p
    needs every draw, so power is that of the fixed test with ``n_max`` draws; what is saved
    is the draws spent on clearly unremarkable observations (``h / p`` of them on average).
    Draws given beyond the stopping point are ignored.

    Example:
        >>> sequential_pvalue([0, 1, 1, 0, 1], n_max=100, h=3)
        (0.6, 5)
        >>> sequential_pvalue([0] * 100, n_max=100, h=10)
        (0.009900990099009901, 100)
    """
    e = np.asarray(exceed, dtype=bool).ravel()
    if h < 1 or n_max < 1:
        raise ValueError(f"need h >= 1 and n_max >= 1, got h={h}, n_max={n_max}")
    if e.size > n_max:
        e = e[:n_max]
    hits = np.cumsum(e)
    at = np.flatnonzero(hits >= h)
    if at.size:
        n = int(at[0]) + 1
        return h / n, n
    if e.size < n_max:
        raise ValueError(f"only {e.size} of {n_max} null draws and fewer than h={h} exceedances: the test is not done")
    return (1 + int(hits[-1])) / (n_max + 1), n_max


def holm(p_values: ArrayLike) -> NDArray[np.float64]:
    """Holm-Bonferroni step-down adjusted p-values (FWER), any shape. NaNs are passed
    through and not counted in m.

    >>> holm([0.01, 0.04, 0.03, np.nan]).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(p_values, dtype=float)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    if np.any((flat[ok] < 0) | (flat[ok] > 1)):
        raise ValueError("p-values must be in [0, 1]")
    q, m = flat[ok], int(ok.sum())
    order = np.argsort(q, kind="stable")
    ranks = np.arange(1, m + 1)
    adj = np.maximum.accumulate(q[order] * (m - ranks + 1))  # (m - i + 1) p_(i), then running max
    out = flat.copy()
    out[np.flatnonzero(ok)[order]] = np.minimum(adj, 1.0)
    return out.reshape(p.shape)


def at_chance(correct: ArrayLike, labels: ArrayLike, alpha: float = 0.01) -> str:
    """Why top-1 accuracy is not above the majority-class rate (one-sided binomial), or ``''``.

    Accuracy below chance makes lesion damage meaningless, so the ablation claims and the
    lesion intervention both ask this before they trust a drop in accuracy.

    Example:
        >>> at_chance(np.ones(60, bool), np.arange(60) % 10)
        ''
    """
    correct, labels = np.asarray(correct, bool), np.asarray(labels)
    n = correct.size
    if n == 0:
        return "no labeled image was scored"
    chance = np.bincount(labels[labels >= 0]).max() / n
    k = int(correct.sum())
    p = st.binomtest(k, n, min(max(chance, 1e-12), 1.0), alternative="greater").pvalue if chance < 1 else 1.0
    if p > alpha:
        return (f"the intact model is at chance (top-1 {k / n:.1%} vs {chance:.1%} for the majority class, "
                f"binomial p = {p:.2g}, n = {n}); lesion damage is undefined")
    return ""
