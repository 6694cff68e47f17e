"""Effect sizes, confidence intervals and the vectorised helpers behind :mod:`.stats`.

Everything here is numpy/scipy only. Row-wise helpers take arrays of shape ``(B, n)``
(``B`` resamples of ``n`` observations) so a bootstrap or permutation is one matrix
operation instead of a Python loop. Randomness only ever comes from an explicit
``numpy.random.Generator`` (or an ``int`` seed turned into one), never from global state.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, overload

import numpy as np
import scipy.stats as st
from numpy.typing import ArrayLike, NDArray

from resstream_assert.errors import DegenerateDataError

#: A random source: a generator, or an int seed for one.
Rng = np.random.Generator | int

__all__ = [
    "Rng",
    "bootstrap_ci",
    "clopper_pearson",
    "wilson_interval",
    "newcombe_diff_ci",
    "rank_biserial",
    "cramers_v",
    "trend_slope",
]

# Upper bound on the elements of one resample matrix: keeps a 9999-resample bootstrap of a
# 2048-channel block at a few tens of MB instead of ~160 MB.
_CHUNK_ELEMENTS = 1 << 21
_ALTERNATIVES = ("less", "greater", "two-sided")
# Permuted statistics equal to the observed one up to rounding count as "as extreme".
_TOL = 1e-12


def as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    """Return a Generator; an ``int`` is a seed. ``None`` and ``RandomState`` are refused
    because they would make the result depend on global or legacy state."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator or an int seed, not {type(rng).__name__}; "
        "pass e.g. rng=np.random.default_rng(seed) so results are reproducible"
    )


def check_alternative(alternative: str) -> str:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    return alternative


def as_1d(a: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def drop_nan_pairs(*arrays: ArrayLike) -> tuple[list[NDArray[np.float64]], int]:
    """Drop every position where any array is NaN; return the arrays and the count dropped."""
    arrs = [as_1d(a, f"argument {i}") for i, a in enumerate(arrays)]
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise ValueError(f"paired inputs must have equal length, got {[a.shape[0] for a in arrs]}")
    keep = np.logical_and.reduce([~np.isnan(a) for a in arrs])
    return [a[keep] for a in arrs], int(n - keep.sum())


def chunks(total: int, row_len: int) -> list[int]:
    """Split ``total`` resamples into chunk sizes whose matrices stay under the memory cap."""
    size = max(1, _CHUNK_ELEMENTS // max(row_len, 1))
    return [min(size, total - start) for start in range(0, total, size)]


def pearson_rows(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pearson correlation along the last axis; NaN where either row is constant."""
    ac = a - a.mean(axis=-1, keepdims=True)
    bc = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((ac * ac).sum(axis=-1) * (bc * bc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        # A relative floor: rows that are constant up to rounding count as constant.
        return np.where(den > 1e-12 * max(1.0, float(np.max(den, initial=0.0))),
                        (ac * bc).sum(axis=-1) / den, np.nan)


def spearman_rows(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """Spearman rho along the last axis (average ranks, so ties match scipy.stats.spearmanr)."""
    return pearson_rows(st.rankdata(x, axis=-1), st.rankdata(y, axis=-1))


def partial_spearman_rows(x: NDArray[np.float64], y: NDArray[np.float64],
                          z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spearman of x and y controlling for the covariates z (``(..., n, k)``), row-wise:
    rank everything, regress the covariate ranks out of both, correlate the residuals."""
    rz = st.rankdata(z, axis=-2)
    rz = rz - rz.mean(axis=-2, keepdims=True)
    pinv = np.linalg.pinv(rz)  # (..., k, n); pinv copes with covariates that are constant in a resample

    def resid(v: NDArray[np.float64]) -> NDArray[np.float64]:
        rv = st.rankdata(v, axis=-1)
        rv = rv - rv.mean(axis=-1, keepdims=True)
        coef = np.einsum("...kn,...n->...k", pinv, rv)
        return rv - np.einsum("...nk,...k->...n", rz, coef)

    return pearson_rows(resid(x), resid(y))


@overload
def rank_biserial(u: float, n1: int, n2: int) -> float: ...
@overload
def rank_biserial(u: NDArray[np.float64], n1: int, n2: int) -> NDArray[np.float64]: ...
def rank_biserial(u: float | NDArray[np.float64], n1: int, n2: int) -> float | NDArray[np.float64]:
    """Rank-biserial correlation ``2U/(n1 n2) - 1`` from the Mann-Whitney U of the first sample.

    Positive means the first sample tends to exceed the second (equals Cliff's delta).

    >>> rank_biserial(9.0, 3, 3)
    1.0
    """
    return 2.0 * u / (n1 * n2) - 1.0


@overload
def cramers_v(chi2: float, n: int, r: int, c: int) -> float: ...
@overload
def cramers_v(chi2: NDArray[np.float64], n: int, r: int, c: int) -> NDArray[np.float64]: ...
def cramers_v(chi2: float | NDArray[np.float64], n: int, r: int, c: int) -> float | NDArray[np.float64]:
    """Cramér's V ``sqrt(chi2 / (n (min(r, c) - 1)))``, in [0, 1].

    >>> round(float(cramers_v(8.0, 50, 2, 2)), 3)
    0.4
    """
    return np.sqrt(chi2 / (n * (min(r, c) - 1)))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided Clopper-Pearson interval for a binomial proportion ``k/n``.

    >>> clopper_pearson(0, 10)[0]
    0.0
    """
    ci = st.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k/n`` (the building block of Newcombe's difference CI).

    Closed form (equal to scipy's ``proportion_ci(method="wilson")``, ~100× faster, which
    matters when it runs inside a calibration loop).

    >>> lo, hi = wilson_interval(5, 10); round(lo, 4), round(hi, 4)
    (0.2366, 0.7634)
    """
    z = float(st.norm.ppf(0.5 + level / 2))
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z / (n + z2) * float(np.sqrt(k * (n - k) / n + z2 / 4))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff_ci(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score CI (method 10, 1998) for ``k1/n1 - k2/n2``.

    Unlike the Wald interval it stays inside [-1, 1] and behaves at 0 or n successes.

    >>> lo, hi = newcombe_diff_ci(56, 70, 48, 80); round(lo, 4), round(hi, 4)
    (0.0524, 0.3339)
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, level)
    l2, u2 = wilson_interval(k2, n2, level)
    d = p1 - p2
    return (d - float(np.hypot(p1 - l1, u2 - p2)), d + float(np.hypot(u1 - p1, p2 - l2)))


def percentile_ci(samples: NDArray[np.float64], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring NaN (degenerate resamples)."""
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return (np.nan, np.nan)
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _wants_axis(fn: Callable[..., object]) -> bool:
    try:
        return "axis" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins/ufuncs without a signature
        return False


def bootstrap_ci(stat_fn: Callable[..., Any], *arrays: ArrayLike, n_resamples: int,
                 rng: np.random.Generator | int, level: float = 0.95, paired: bool = True,
                 vectorized: bool | None = None) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` of ``stat_fn(*arrays)``.

    ``paired=True`` resamples positions (rows of the ``arrays`` taken together, e.g. the
    (x, y) pairs of a correlation); ``paired=False`` resamples each array independently
    (two-group comparisons). NaN positions are dropped first (pairwise when paired).
    Like ``scipy.stats.bootstrap``, ``stat_fn`` is called as ``stat_fn(*resamples, axis=-1)``
    on ``(B, n)`` matrices when it takes an ``axis`` argument (or ``vectorized=True``), and
    once per resample otherwise. Resamples where the statistic is NaN are ignored;
    ``n_resamples=0`` gives ``(nan, nan)``.

    >>> x = np.arange(20.0)
    >>> lo, hi = bootstrap_ci(np.mean, x, n_resamples=2000, rng=0)
    >>> lo < 9.5 < hi
    True
    """
    gen = as_rng(rng)
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one data array")
    if paired:
        data, _ = drop_nan_pairs(*arrays)
    else:
        data = [a[~np.isnan(a)] for a in (as_1d(x, f"argument {i}") for i, x in enumerate(arrays))]
    if any(a.size == 0 for a in data):
        raise DegenerateDataError("bootstrap_ci: an input has no non-NaN values")
    if n_resamples == 0:
        return (np.nan, np.nan)
    vec = _wants_axis(stat_fn) if vectorized is None else vectorized
    out: list[NDArray[np.float64]] = []
    for b in chunks(n_resamples, sum(a.size for a in data)):
        if paired:
            idx = gen.integers(0, data[0].size, size=(b, data[0].size))
            res = [a[idx] for a in data]
        else:
            res = [a[gen.integers(0, a.size, size=(b, a.size))] for a in data]
        if vec:
            vals = np.asarray(stat_fn(*res, axis=-1), dtype=float).reshape(b)
        else:
            vals = np.array([float(stat_fn(*(r[i] for r in res))) for i in range(b)])
        out.append(vals)
    return percentile_ci(np.concatenate(out), level)


# --- kernels shared by the tests in stats.py -------------------------------------------

def perm_pvalue(null_hits: int, n_resamples: int) -> float:
    """The +1/+1 permutation p-value (never 0; minimum 1/(n_resamples + 1))."""
    if n_resamples < 1:
        raise ValueError(f"a permutation/Monte-Carlo p-value needs n_resamples >= 1, got {n_resamples}")
    return (1.0 + null_hits) / (n_resamples + 1.0)


def count_extreme(null: NDArray[np.float64], obs: float, alternative: str) -> int:
    """How many null statistics are as or more extreme than ``obs`` (relative tolerance)."""
    tol = _TOL * max(1.0, abs(obs))
    if alternative == "less":
        return int(np.count_nonzero(null <= obs + tol))
    if alternative == "greater":
        return int(np.count_nonzero(null >= obs - tol))
    return int(np.count_nonzero(np.abs(null) >= abs(obs) - tol))


def check_not_constant(n_min: int, **arrays: NDArray[np.float64]) -> None:
    for name, a in arrays.items():
        if a.size < n_min:
            raise DegenerateDataError(f"{name} has {a.size} non-NaN values; the test needs >= {n_min}")
        if np.ptp(a) == 0:
            raise DegenerateDataError(
                f"{name} is constant (all {a.size} values equal {a[0]:.6g}): the rank correlation "
                "is undefined; report the claim as not_applicable")


def centered_ranks(a: NDArray[np.float64]) -> NDArray[np.float64]:
    r = st.rankdata(a)
    return r - r.mean()


def permutation_null(a: NDArray[np.float64], b: NDArray[np.float64], n_resamples: int,
                     gen: np.random.Generator) -> NDArray[np.float64]:
    """Null correlations of centred vectors a and b with b's labels permuted, in chunks.

    A permutation keeps b's mean and norm, so each null correlation is a dot product over
    the fixed norm: one gather plus one matrix-vector product per chunk of permutations.
    """
    n, den = a.size, float(np.linalg.norm(a) * np.linalg.norm(b))
    out = [b[gen.permuted(np.tile(np.arange(n), (size, 1)), axis=1)] @ a / den
           for size in chunks(n_resamples, n)]
    return np.concatenate(out) if out else np.empty(0)


def covariate_basis(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Orthonormal basis (n, r) of [1, ranks of z's columns] for residualising ranks.

    SVD with rank truncation, not QR: a constant or duplicated covariate must not make us
    project out a spurious extra direction.
    """
    u, sv, _ = np.linalg.svd(np.column_stack([np.ones(z.shape[0]), st.rankdata(z, axis=0)]),
                             full_matrices=False)
    return u[:, sv > sv[0] * 1e-10]


def freedman_lane_null(ex: NDArray[np.float64], ey: NDArray[np.float64], q: NDArray[np.float64],
                       n_resamples: int, gen: np.random.Generator) -> NDArray[np.float64]:
    """Freedman-Lane null of a partial correlation: permute y's residuals ``ey``, project
    them off the covariate basis ``q`` again, correlate with x's residuals ``ex``."""
    out = []
    for size in chunks(n_resamples, ex.size):
        perm = ey[gen.permuted(np.tile(np.arange(ex.size), (size, 1)), axis=1)]
        perm = perm - (perm @ q) @ q.T
        out.append(pearson_rows(np.broadcast_to(ex, perm.shape), perm))
    return np.concatenate(out) if out else np.empty(0)


def rank_biserial_rows(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """Rank-biserial of x vs y per row (two independent samples along the last axis)."""
    ranks = st.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    n1 = x.shape[-1]
    return rank_biserial(ranks[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2.0, n1, y.shape[-1])


def chi2_rows(tables: NDArray[np.number]) -> NDArray[np.float64]:
    """Pearson chi-square of each (r, c) table in a (B, r, c) stack; empty margins add 0."""
    n = tables.sum(axis=(1, 2), keepdims=True)
    expected = tables.sum(axis=2, keepdims=True) * tables.sum(axis=1, keepdims=True) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(expected > 0, (tables - expected) ** 2 / expected, 0.0)
    return terms.sum(axis=(1, 2))


def signed_rank_rows(d: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """Matched-pairs rank-biserial (T+ - T-)/(T+ + T-) per row, zeros excluded (wilcox)."""
    a = np.abs(d)
    # Zeros are the smallest |d|, so a nonzero's rank among nonzeros is its overall rank
    # minus the number of zeros in its row.
    ranks = st.rankdata(a, axis=-1) - (a == 0).sum(axis=-1, keepdims=True)
    tp = np.where(d > 0, ranks, 0).sum(axis=-1)
    tm = np.where(d < 0, ranks, 0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tp - tm) / (tp + tm)


def paired_diff(x: ArrayLike, y: ArrayLike | None) -> tuple[NDArray[np.float64], int]:
    if y is None:
        (d,), dropped = drop_nan_pairs(x)
        return d, dropped
    (a, b), dropped = drop_nan_pairs(x, y)
    return a - b, dropped


def trend_slope(x: ArrayLike, y: ArrayLike) -> float | NDArray[np.float64]:
    """Least-squares slope of y on x. ``y`` may be 2-D ``(m, k)``: one slope per row (e.g.
    ΔD vs zoom for the lesioned set and every random set at once). NaN points are ignored
    per row; rows with < 2 points or constant x give NaN.

    >>> trend_slope([1.0, 2, 3], [[2.0, 4, 6], [1, 1, 1]]).tolist()
    [2.0, 0.0]
    """
    xs = as_1d(x, "x")
    ys = np.asarray(y, dtype=float)
    if ys.shape[-1] != xs.size or ys.ndim > 2:
        raise ValueError(f"y must be (k,) or (m, k) with k = len(x) = {xs.size}, got {ys.shape}")
    w = ~(np.isnan(ys) | np.isnan(xs))
    cnt = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = np.where(w, xs, 0).sum(axis=-1, keepdims=True) / cnt[..., None]
        ym = np.where(w, ys, 0).sum(axis=-1, keepdims=True) / cnt[..., None]
        dx = np.where(w, xs - xm, 0)
        sxx = (dx * dx).sum(axis=-1)
        slope = (dx * np.where(w, ys - ym, 0)).sum(axis=-1) / sxx
    slope = np.where((cnt >= 2) & (sxx > 0), slope, np.nan)
    return float(slope) if ys.ndim == 1 else slope
