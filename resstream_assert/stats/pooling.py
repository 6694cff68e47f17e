"""Pooling block effects into one claim-level estimate: a random-effects combination.

A claim is tested per block; the blocks of one network are not replicates of one true effect
(a block near the input need not behave like one near the output), so the claim-level
number is a random-effects mean (DerSimonian and Laird, 1986): each block's effect with its
own sampling variance, plus a between-block variance ``tau2`` estimated from how much the
block effects disagree beyond their sampling error. Its CI widens with that disagreement,
which a bootstrap of the median over a handful of blocks does not show.

A block's sampling variance comes from its reported 95% interval, ``((high - low) / 3.92)²``
(a normal approximation; the intervals are Clopper-Pearson, Fisher-z or bootstrap intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as st

__all__ = ["Pooled", "random_effects", "se_from_ci"]

_Z975 = float(st.norm.ppf(0.975))


@dataclass(frozen=True)
class Pooled:
    """A random-effects estimate: ``effect`` with its 95% interval, the between-block variance
    ``tau2``, Cochran's ``q`` with its p-value, and ``k`` blocks pooled."""

    effect: float
    ci_low: float
    ci_high: float
    se: float
    tau2: float
    q: float
    p_heterogeneity: float
    k: int


def se_from_ci(low: ArrayLike, high: ArrayLike) -> np.ndarray:
    """Standard errors from two-sided 95% intervals (normal approximation).

    Example:
        >>> se_from_ci([0.0], [3.92]).round(3).tolist()
        [1.0]
    """
    return (np.asarray(high, float) - np.asarray(low, float)) / (2 * _Z975)


def random_effects(effects: ArrayLike, variances: ArrayLike) -> Pooled:
    """DerSimonian-Laird random-effects mean of ``effects`` with sampling ``variances``.

    Blocks with a non-finite effect or a non-positive or non-finite variance are left out; with
    none left the result is all NaN (``k = 0``); with one it is that block's effect and interval.

    Example (the 13 BCG vaccine trials, log risk ratios; the DL estimate is -0.714,
    95% CI [-1.064, -0.364], tau2 0.309):
        >>> import numpy as np
        >>> a, b = np.array([4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27]), np.array(
        ...     [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886])
        >>> c, d = np.array([11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29]), np.array(
        ...     [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825])
        >>> y = np.log(a / (a + b) / (c / (c + d)))
        >>> v = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
        >>> p = random_effects(y, v)
        >>> round(p.effect, 3), round(p.ci_low, 3), round(p.ci_high, 3), round(p.tau2, 3)
        (-0.714, -1.064, -0.364, 0.309)
    """
    y, v = np.asarray(effects, float), np.asarray(variances, float)
    ok = np.isfinite(y) & np.isfinite(v) & (v > 0)
    y, v = y[ok], v[ok]
    k = int(y.size)
    if k == 0:
        return Pooled(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    w = 1.0 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - fixed) ** 2))
    c = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    tau2 = max(0.0, (q - (k - 1)) / c) if k > 1 and c > 0 else 0.0
    w_re = 1.0 / (v + tau2)
    mu = float(np.sum(w_re * y) / np.sum(w_re))
    se = float(math.sqrt(1.0 / np.sum(w_re)))
    p_het = float(st.chi2.sf(q, k - 1)) if k > 1 else math.nan
    return Pooled(mu, mu - _Z975 * se, mu + _Z975 * se, se, tau2, q, p_het, k)
