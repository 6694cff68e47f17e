"""Tests on means: Welch's difference of two group means, and Cochran's Q of heterogeneity
between independent effect estimates (one per block).

The conventions every test here follows are in :mod:`resstream_assert.stats`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from numpy.typing import ArrayLike

from resstream_assert.errors import DegenerateDataError
from resstream_assert.stats.effects import as_1d, check_alternative
from resstream_assert.results import TestResult


def welch_difference(x: ArrayLike, y: ArrayLike, *, alternative: str) -> TestResult:
    """Welch's t-test of ``mean(x) - mean(y)`` (scipy), the difference itself as the effect.

    The CI is scipy's two-sided 95% Welch interval of the difference; ``values["se"]`` is its
    standard error (what Cochran's Q weighs a block by). NaNs are dropped per group; each group
    needs at least 2 values and some spread.

    >>> r = welch_difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.5], alternative="less")
    >>> round(r.effect, 3), r.p_value < 0.05
    (-3.167, True)
    """
    check_alternative(alternative)
    x0, y0 = as_1d(x, "x"), as_1d(y, "y")
    x, y = x0[~np.isnan(x0)], y0[~np.isnan(y0)]
    if x.size < 2 or y.size < 2:
        raise DegenerateDataError(f"welch_difference needs >= 2 values per group, got {x.size} and {y.size}")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0:
        raise DegenerateDataError("both groups are constant: the difference has no standard error")
    res = st.ttest_ind(x, y, equal_var=False, alternative=alternative)
    ci = st.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    diff = float(x.mean() - y.mean())
    return TestResult(float(res.statistic), float(res.pvalue), diff, float(ci.low), float(ci.high), x.size + y.size,
                      "welch t", alternative, "mean_difference", None, x0.size + y0.size - x.size - y.size,
                      {"se": math.sqrt(vx + vy), "df": float(res.df), "n_x": x.size, "n_y": y.size})


def cochran_q(effects: ArrayLike, standard_errors: ArrayLike) -> TestResult:
    """Cochran's Q test that independent estimates share one true effect (fixed-effect meta-analysis).

    ``Q = sum w_i (y_i - ybar)^2`` with ``w_i = 1 / se_i^2`` and ``ybar`` the inverse-variance
    weighted mean, against chi-square with ``k - 1`` degrees of freedom. The effect is
    Higgins' ``I^2 = max(0, (Q - df) / Q)``, the share of the spread beyond sampling error
    (CI NaN: the chi-square test is the inference); ``values`` hold ``ybar``, its SE and ``df``.
    NaN pairs are dropped; at least two estimates with positive SEs are needed.

    >>> r = cochran_q([0.0, 0.0, 1.0], [0.1, 0.1, 0.1])
    >>> r.p_value < 1e-6, round(r.effect, 3)
    (True, 0.97)
    """
    y0, s0 = as_1d(effects, "effects"), as_1d(standard_errors, "standard_errors")
    if y0.size != s0.size:
        raise ValueError(f"effects and standard_errors differ in length ({y0.size} vs {s0.size})")
    keep = np.isfinite(y0) & np.isfinite(s0) & (s0 > 0)
    y, s = y0[keep], s0[keep]
    if y.size < 2:
        raise DegenerateDataError(f"cochran_q needs >= 2 estimates with positive standard errors, got {y.size}")
    w = 1.0 / s**2
    ybar = float((w * y).sum() / w.sum())
    q = float((w * (y - ybar) ** 2).sum())
    df = y.size - 1
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    return TestResult(q, float(st.chi2.sf(q, df)), i2, math.nan, math.nan, y.size, "cochran Q (chi-square)",
                      "greater", "I2", None, int((~keep).sum()),
                      {"pooled_effect": ybar, "pooled_se": math.sqrt(1.0 / w.sum()), "df": df})
