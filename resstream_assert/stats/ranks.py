"""Rank and permutation tests on paired or grouped measurements (Spearman, Mann-Whitney,
Kruskal-Wallis, Wilcoxon, sign).

The conventions every test here follows are in :mod:`resstream_assert.stats`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from numpy.typing import ArrayLike, NDArray

from resstream_assert.stats.effects import Rng, as_1d, as_rng, bootstrap_ci, centered_ranks, check_alternative, check_not_constant, chunks, clopper_pearson, count_extreme, covariate_basis, drop_nan_pairs, freedman_lane_null, paired_diff, partial_spearman_rows, pearson_rows, percentile_ci, perm_pvalue, permutation_null, rank_biserial, rank_biserial_rows, signed_rank_rows, spearman_rows
from resstream_assert.errors import DegenerateDataError
from resstream_assert.results import TestResult


def spearman_permutation(x: ArrayLike, y: ArrayLike, *, alternative: str, rng: Rng,
                         n_resamples: int = 9999, n_boot: int = 2000) -> TestResult:
    """Spearman rho of paired x, y with a permutation p-value and a bootstrap CI of rho.

    Ties get average ranks (coded values such as M = 0 or 10 stay as tied ranks). The null
    permutes y's ranks against x's (channel labels). The CI is the percentile bootstrap
    over pairs, re-ranking each resample; ``n_boot=0`` skips it (CI = NaN).

    >>> x = np.arange(30.0); y = -x + np.random.default_rng(0).normal(size=30)
    >>> r = spearman_permutation(x, y, alternative="less", rng=1, n_resamples=999)
    >>> r.effect < -0.9 and r.p_value == 1 / 1000
    True
    """
    check_alternative(alternative)
    gen = as_rng(rng)
    (x, y), dropped = drop_nan_pairs(x, y)
    check_not_constant(3, x=x, y=y)
    rx, ry = centered_ranks(x), centered_ranks(y)
    rho = float(pearson_rows(rx, ry))
    null = permutation_null(rx, ry, n_resamples, gen)
    p = perm_pvalue(count_extreme(null, rho, alternative), n_resamples)
    lo, hi = bootstrap_ci(spearman_rows, x, y, n_resamples=n_boot, rng=gen, vectorized=True)
    return TestResult(rho, p, rho, lo, hi, x.size, "spearman permutation", alternative,
                      "spearman_rho", n_resamples, dropped)


def partial_spearman(x: ArrayLike, y: ArrayLike, z: ArrayLike, *, alternative: str, rng: Rng,
                     n_resamples: int = 9999, n_boot: int = 2000) -> TestResult:
    """Spearman of x and y controlling for z (1-D, or 2-D ``(n, k)`` for k covariates).

    Ranks are residualised on z's ranks and correlated. The permutation null is
    Freedman-Lane: permute y's residuals and project them off z again before correlating,
    which keeps the x-z and y-z dependence intact under the null.

    >>> g = np.random.default_rng(0); z = g.normal(size=40)
    >>> x, y = z + g.normal(size=40), z + g.normal(size=40)   # related only through z
    >>> partial_spearman(x, y, z, alternative="two-sided", rng=1, n_resamples=999).p_value > 0.05
    True
    """
    check_alternative(alternative)
    gen = as_rng(rng)
    z2 = np.asarray(z, dtype=float)
    z2 = z2[:, None] if z2.ndim == 1 else z2
    if z2.ndim != 2:
        raise ValueError(f"z must be 1-D or 2-D (n, k), got shape {np.shape(z)}")
    xs, ys = as_1d(x, "x"), as_1d(y, "y")
    if not (xs.size == ys.size == z2.shape[0]):
        raise ValueError(f"x, y, z must have equal length, got {xs.size}, {ys.size}, {z2.shape[0]}")
    keep = ~(np.isnan(xs) | np.isnan(ys) | np.isnan(z2).any(axis=1))
    xs, ys, z2 = xs[keep], ys[keep], z2[keep]
    check_not_constant(z2.shape[1] + 3, x=xs, y=ys)
    q = covariate_basis(z2)
    ex, ey = (v - q @ (q.T @ v) for v in (st.rankdata(xs), st.rankdata(ys)))
    if np.allclose(ex, 0) or np.allclose(ey, 0):
        raise DegenerateDataError("x or y is fully explained by z: the partial correlation is undefined")
    rho = float(pearson_rows(ex, ey))
    null = freedman_lane_null(ex, ey, q, n_resamples, gen)
    p = perm_pvalue(count_extreme(null, rho, alternative), n_resamples)
    boots = [partial_spearman_rows(xs[idx], ys[idx], z2[idx]) for idx in
             (gen.integers(0, xs.size, size=(b, xs.size)) for b in chunks(n_boot, xs.size * (z2.shape[1] + 2)))]
    lo, hi = percentile_ci(np.concatenate(boots)) if boots else (math.nan, math.nan)
    return TestResult(rho, p, rho, lo, hi, xs.size, "partial spearman (Freedman-Lane permutation)",
                      alternative, "partial_spearman_rho", n_resamples, int((~keep).sum()))


def mann_whitney(x: ArrayLike, y: ArrayLike, *, alternative: str, rng: Rng,
                 n_boot: int = 2000) -> TestResult:
    """Mann-Whitney U test (scipy) with the rank-biserial effect ``r = 2U/(n1 n2) - 1``.

    ``U`` is the statistic of x (pairs with x > y, ties counting 1/2), so **r > 0 means x
    tends to exceed y**, and ``alternative="greater"`` tests exactly that. The CI is a
    percentile bootstrap resampling the two groups independently. NaNs are dropped per group.

    >>> mann_whitney([3, 4, 5], [0, 1, 2], alternative="greater", rng=0).effect
    1.0
    """
    check_alternative(alternative)
    x0, y0 = as_1d(x, "x"), as_1d(y, "y")
    x, y = x0[~np.isnan(x0)], y0[~np.isnan(y0)]
    if x.size == 0 or y.size == 0:
        raise DegenerateDataError(f"mann_whitney needs two non-empty groups, got {x.size} and {y.size}")
    if np.ptp(np.concatenate([x, y])) == 0:
        raise DegenerateDataError("all values in both groups are equal: no rank information")
    res = st.mannwhitneyu(x, y, alternative=alternative)
    r = float(rank_biserial(res.statistic, x.size, y.size))
    lo, hi = bootstrap_ci(rank_biserial_rows, x, y, n_resamples=n_boot, rng=rng, paired=False)
    return TestResult(float(res.statistic), float(res.pvalue), r, lo, hi, x.size + y.size,
                      "mann-whitney U", alternative, "rank_biserial", None,
                      x0.size + y0.size - x.size - y.size, {"n_x": x.size, "n_y": y.size})


def kruskal_wallis(groups: dict[str, ArrayLike], *, rng: Rng, n_resamples: int = 4999,
                   n_boot: int = 1000) -> TestResult:
    """Kruskal-Wallis H across named groups, a permutation p (group labels shuffled) and epsilon-squared.

    ``statistic`` is scipy's tie-corrected H; the effect is ``epsilon^2 = H / (n - 1)`` (0: no
    difference in ranks, 1: groups fully separated) with a stratified percentile bootstrap CI
    (each group resampled within itself). ``values`` holds ``n_<name>`` and ``median_<name>``.

    >>> g = np.random.default_rng(0)
    >>> r = kruskal_wallis({"a": g.normal(0, 1, 30), "b": g.normal(2, 1, 30)}, rng=1, n_resamples=999)
    >>> r.p_value == 1 / 1000 and r.effect > 0.3
    True
    """
    data = {k: as_1d(v, k) for k, v in groups.items()}
    data = {k: v[~np.isnan(v)] for k, v in data.items()}
    used = {k: v for k, v in data.items() if v.size}
    if len(used) < 2:
        raise DegenerateDataError(f"kruskal_wallis needs >= 2 non-empty groups, got {sorted(used)}")
    allv = np.concatenate(list(used.values()))
    if np.ptp(allv) == 0:
        raise DegenerateDataError("all values are equal: no rank information")
    gen = as_rng(rng)
    n, sizes = allv.size, np.array([v.size for v in used.values()])
    h = float(st.kruskal(*used.values()).statistic)
    ranks = st.rankdata(allv)
    labels = np.repeat(np.arange(len(used)), sizes)

    def spread(lab: NDArray[np.int64]) -> NDArray[np.float64]:  # sum_g R_g^2 / n_g: H up to constants
        onehot = lab[..., None] == np.arange(len(used))
        return ((onehot * ranks[:, None]).sum(-2) ** 2 / sizes).sum(-1)

    obs = float(spread(labels))
    hits = sum(int(np.count_nonzero(spread(np.stack([gen.permutation(labels) for _ in range(b)])) >= obs * (1 - 1e-12)))
               for b in chunks(n_resamples, n * len(used)))
    boots = []
    for _ in range(n_boot):
        res = [v[gen.integers(0, v.size, v.size)] for v in used.values()]
        both = np.concatenate(res)
        boots.append(st.kruskal(*res).statistic / (n - 1) if np.ptp(both) > 0 else np.nan)
    lo, hi = percentile_ci(np.asarray(boots, float)) if boots else (math.nan, math.nan)
    values = {f"n_{k}": float(v.size) for k, v in data.items()}
    values.update({f"median_{k}": float(np.median(v)) if v.size else math.nan for k, v in data.items()})
    return TestResult(h, perm_pvalue(hits, n_resamples), h / (n - 1), lo, hi, n, "kruskal-wallis (permutation)",
                      "greater", "epsilon_squared", n_resamples, sum(as_1d(v, k).size for k, v in groups.items()) - n,
                      values)


def wilcoxon_signed_rank(x: ArrayLike, y: ArrayLike | None = None, *, alternative: str, rng: Rng,
                         n_boot: int = 2000) -> TestResult:
    """Wilcoxon signed-rank test of ``x`` (or of the paired differences ``x - y``).

    Zero differences are discarded (``zero_method="wilcox"``) before calling scipy, so the
    exact null is used for small n even when zeros were present; ``n`` counts the non-zero
    differences used and ``values["n_zero"]`` the zeros. ``statistic`` is T+ (sum of the
    ranks of positive differences) for every alternative. Effect: matched-pairs
    rank-biserial ``(T+ - T-)/(T+ + T-)``, **positive when x tends to exceed y** (or x > 0),
    with a percentile bootstrap CI over pairs.

    >>> wilcoxon_signed_rank([1.0, 2, 3, 4, -0.5], alternative="greater", rng=0).effect
    0.8666666666666667
    """
    check_alternative(alternative)
    d, dropped = paired_diff(x, y)
    nz = d[d != 0]
    if nz.size == 0:
        raise DegenerateDataError(f"all {d.size} differences are zero (or NaN): no signed ranks")
    res = st.wilcoxon(nz, zero_method="wilcox", alternative=alternative)
    ranks = st.rankdata(np.abs(nz))
    t_plus = float(ranks[nz > 0].sum())
    effect = float(signed_rank_rows(nz))
    lo, hi = bootstrap_ci(signed_rank_rows, d, n_resamples=n_boot, rng=rng)
    return TestResult(t_plus, float(res.pvalue), effect, lo, hi, nz.size, "wilcoxon signed-rank",
                      alternative, "matched_rank_biserial", None, dropped, {"n_zero": d.size - nz.size})


def sign_test(x: ArrayLike, y: ArrayLike | None = None, *, alternative: str) -> TestResult:
    """Exact sign test that ``x`` (or ``x - y``) is positive more/less often than not.

    Zeros are discarded. ``statistic`` is the number of positives; effect the fraction
    positive among non-zero values with its Clopper-Pearson CI (0.5 = no tendency).

    >>> r = sign_test([1.0, 2, 3, 4, -1, 5, 6, 7], alternative="greater"); r.effect
    0.875
    """
    check_alternative(alternative)
    d, dropped = paired_diff(x, y)
    nz = d[d != 0]
    if nz.size == 0:
        raise DegenerateDataError(f"all {d.size} values are zero (or NaN): the sign test has no data")
    k = int((nz > 0).sum())
    res = st.binomtest(k, nz.size, 0.5, alternative=alternative)
    lo, hi = clopper_pearson(k, nz.size)
    return TestResult(k, float(res.pvalue), k / nz.size, lo, hi, nz.size, "exact sign test",
                      alternative, "fraction_positive", None, dropped, {"n_zero": d.size - nz.size})
