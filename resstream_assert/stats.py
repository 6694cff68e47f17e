"""Statistical tests for residual-stream claims (numpy/scipy only, no torch).

Conventions shared by every test:

* Each returns an immutable :class:`~resstream_assert.results.TestResult` (except
  ``empirical_pvalue``, ``sequential_pvalue``, ``trend_slope``, ``bootstrap_ci``, ``holm``
  and ``at_chance``, which return plain values).
* Randomness comes only from the keyword ``rng`` (a ``numpy.random.Generator`` or an ``int``
  seed); the same seed gives bit-identical results.
* NaN observations are dropped (pairwise for paired data); ``n`` counts what the test
  used and ``n_dropped`` what was removed.
* Permutation / Monte-Carlo p-values use the +1/+1 rule, ``(1 + #{null as or more
  extreme}) / (n_resamples + 1)``, so the smallest possible p is ``1/(n_resamples + 1)``:
  size ``n_resamples`` so a real effect can clear ``alpha / m`` after Holm.
* Every CI is a two-sided 95% interval of the effect, even for one-sided tests (so a CI
  bound beyond the null is a stricter, alpha = 0.025, criterion than one-sided p < 0.05).
* Data that cannot support the test (constant input, empty group, table smaller than
  2×2, no discordant pairs...) raise :class:`DegenerateDataError` (a ``ValueError``);
  catch it to report ``not_applicable`` / ``inconclusive`` with its message as the reason.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from numpy.typing import ArrayLike, NDArray

from resstream_assert.effects import (DegenerateDataError, as_1d, as_rng, bootstrap_ci, centered_ranks,
                      check_alternative, check_not_constant, chi2_rows, chunks, clopper_pearson,
                      count_extreme, covariate_basis, cramers_v, drop_nan_pairs,
                      freedman_lane_null, newcombe_diff_ci, paired_diff,
                      partial_spearman_rows, pearson_rows, percentile_ci, perm_pvalue,
                      permutation_null, rank_biserial, rank_biserial_rows, signed_rank_rows,
                      spearman_rows, trend_slope)
from resstream_assert.results import TestResult

__all__ = [
    "DegenerateDataError", "spearman_permutation", "partial_spearman", "mann_whitney",
    "binomial_proportion", "chi2_independence_mc", "fisher_exact_greater", "cochran_armitage",
    "wilcoxon_signed_rank", "sign_test", "mcnemar_exact", "hypergeometric_overlap",
    "empirical_pvalue", "sequential_pvalue", "trend_slope", "bootstrap_ci", "holm", "at_chance",
    "kruskal_wallis",
]

Rng = np.random.Generator | int


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
    x, y = as_1d(x, "x"), as_1d(y, "y")
    if not (x.size == y.size == z2.shape[0]):
        raise ValueError(f"x, y, z must have equal length, got {x.size}, {y.size}, {z2.shape[0]}")
    keep = ~(np.isnan(x) | np.isnan(y) | np.isnan(z2).any(axis=1))
    x, y, z2 = x[keep], y[keep], z2[keep]
    check_not_constant(z2.shape[1] + 3, x=x, y=y)
    q = covariate_basis(z2)
    ex, ey = (v - q @ (q.T @ v) for v in (st.rankdata(x), st.rankdata(y)))
    if np.allclose(ex, 0) or np.allclose(ey, 0):
        raise DegenerateDataError("x or y is fully explained by z: the partial correlation is undefined")
    rho = float(pearson_rows(ex, ey))
    null = freedman_lane_null(ex, ey, q, n_resamples, gen)
    p = perm_pvalue(count_extreme(null, rho, alternative), n_resamples)
    boots = [partial_spearman_rows(x[idx], y[idx], z2[idx]) for idx in
             (gen.integers(0, x.size, size=(b, x.size)) for b in chunks(n_boot, x.size * (z2.shape[1] + 2)))]
    lo, hi = percentile_ci(np.concatenate(boots)) if boots else (math.nan, math.nan)
    return TestResult(rho, p, rho, lo, hi, x.size, "partial spearman (Freedman-Lane permutation)",
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


def binomial_proportion(k: int, n: int, *, p0: float = 0.05, alternative: str = "greater") -> TestResult:
    """Exact binomial test of ``k`` successes in ``n`` against ``p0``; effect ``k/n`` with the
    two-sided Clopper-Pearson CI. ``statistic`` is ``k/n`` as in ``scipy.stats.binomtest``.

    >>> r = binomial_proportion(12, 100, p0=0.05); round(r.p_value, 4), r.effect
    (0.0043, 0.12)
    """
    check_alternative(alternative)
    if n <= 0:
        raise DegenerateDataError("binomial_proportion needs n > 0 trials")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    res = st.binomtest(int(k), int(n), p0, alternative=alternative)
    lo, hi = clopper_pearson(k, n)
    return TestResult(k / n, float(res.pvalue), k / n, lo, hi, int(n), "exact binomial",
                      alternative, "proportion", values={"k": k, "p0": p0})


def chi2_independence_mc(table: ArrayLike, *, rng: Rng, n_resamples: int = 9999,
                         n_boot: int = 2000) -> TestResult:
    """Chi-square test of independence of an r×c count table with a Monte-Carlo p-value.

    Null tables are drawn with both margins fixed (Patefield's algorithm via
    ``scipy.stats.random_table``), the exact conditional null, so small expected counts
    are fine. All-zero rows/columns are dropped first. Effect: Cramér's V with a
    multinomial-bootstrap CI.

    >>> r = chi2_independence_mc([[30, 10], [10, 30]], rng=0, n_resamples=999)
    >>> r.p_value == 1 / 1000, round(r.effect, 2)
    (True, 0.5)
    """
    gen = as_rng(rng)
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or np.any(t < 0) or np.any(t != np.round(t)) or np.isnan(t).any():
        raise ValueError("table must be a 2-D array of non-negative integer counts")
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    r, c = t.shape
    if r < 2 or c < 2:
        raise DegenerateDataError(f"after dropping empty rows/columns the table is {r}×{c}; need >= 2×2")
    n = int(t.sum())
    chi2 = float(chi2_rows(t[None])[0])
    rows, cols = t.sum(axis=1).astype(int), t.sum(axis=0).astype(int)
    sampler = st.random_table(rows, cols, seed=gen)
    hits = 0
    for size in chunks(n_resamples, r * c):
        hits += count_extreme(chi2_rows(sampler.rvs(size=size)), chi2, "greater")
    p = perm_pvalue(hits, n_resamples)
    v = float(cramers_v(chi2, n, r, c))
    boot = gen.multinomial(n, (t / n).ravel(), size=n_boot).reshape(n_boot, r, c)
    lo, hi = percentile_ci(cramers_v(chi2_rows(boot), n, r, c)) if n_boot else (math.nan, math.nan)
    return TestResult(chi2, p, v, lo, hi, n, "chi-square independence (Monte-Carlo, fixed margins)",
                      "greater", "cramers_v", n_resamples,
                      values={"df": (r - 1) * (c - 1), "p_asymptotic": st.chi2.sf(chi2, (r - 1) * (c - 1))})


def fisher_exact_greater(k1: int, n1: int, k2: int, n2: int) -> TestResult:
    """One-sided Fisher exact test that proportion 1 (``k1/n1``) exceeds proportion 2.

    ``statistic`` is the sample odds ratio (may be inf); effect ``k1/n1 - k2/n2`` with
    Newcombe's hybrid Wilson-score CI.

    >>> r = fisher_exact_greater(9, 10, 2, 10); round(r.p_value, 4), round(r.effect, 1)
    (0.0027, 0.7)
    """
    for k, m, name in ((k1, n1, "1"), (k2, n2, "2")):
        if m <= 0:
            raise DegenerateDataError(f"group {name} is empty (n{name}=0)")
        if not 0 <= k <= m:
            raise ValueError(f"need 0 <= k{name} <= n{name}, got {k} of {m}")
    res = st.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater")
    lo, hi = newcombe_diff_ci(k1, n1, k2, n2)
    return TestResult(float(res.statistic), float(res.pvalue), k1 / n1 - k2 / n2, lo, hi, n1 + n2,
                      "fisher exact", "greater", "difference_in_proportions",
                      values={"p1": k1 / n1, "p2": k2 / n2})


def cochran_armitage(counts: ArrayLike, totals: ArrayLike, scores: ArrayLike | None = None, *,
                     alternative: str) -> TestResult:
    """Cochran-Armitage trend test of proportions ``counts/totals`` over ordered ``scores``
    (default 0, 1, 2, ...). ``statistic`` is z; ``alternative="greater"`` means the
    proportion increases with the score, ``"less"`` that it decreases.

    Effect: the least-squares slope of the 0/1 outcomes on the score (equivalently of the
    group proportions weighted by ``totals``) with a Wald CI using per-group variances.
    Groups with ``totals == 0`` are dropped.

    >>> r = cochran_armitage([8, 5, 2], [20, 20, 20], alternative="less")
    >>> round(r.statistic, 3), round(r.effect, 3)
    (-2.191, -0.15)
    """
    check_alternative(alternative)
    k, m = as_1d(counts, "counts"), as_1d(totals, "totals")
    s = np.arange(k.size, dtype=float) if scores is None else as_1d(scores, "scores")
    if not (k.size == m.size == s.size):
        raise ValueError("counts, totals and scores must have equal length")
    if np.any(k < 0) or np.any(k > m):
        raise ValueError("need 0 <= counts <= totals")
    keep = m > 0
    k, m, s = k[keep], m[keep], s[keep]
    n, pbar = m.sum(), k.sum() / max(m.sum(), 1)
    if k.size < 2 or np.ptp(s) == 0:
        raise DegenerateDataError("need >= 2 non-empty groups with different scores")
    if pbar in (0.0, 1.0):
        raise DegenerateDataError(f"every outcome is {int(pbar)}: no variation to trend")
    sc = s - (m * s).sum() / n
    sxx = (m * sc**2).sum()
    p = k / m
    slope = float((m * sc * p).sum() / sxx)
    z = slope / math.sqrt(pbar * (1 - pbar) / sxx)
    se = math.sqrt((m * sc**2 * p * (1 - p)).sum()) / sxx
    pv = {"greater": st.norm.sf(z), "less": st.norm.cdf(z), "two-sided": 2 * st.norm.sf(abs(z))}
    h = st.norm.ppf(0.975) * se
    return TestResult(z, float(pv[alternative]), slope, slope - h, slope + h, int(n),
                      "cochran-armitage trend", alternative, "slope_per_score")


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


def mcnemar_exact(b: int, c: int, *, alternative: str) -> TestResult:
    """Exact McNemar test on the discordant pairs: ``b`` = pairs positive under condition 1
    only, ``c`` = positive under condition 2 only; ``"greater"`` means b > c.

    Effect: ``(b - c)/(b + c)`` in [-1, 1] (the net share of discordant pairs favouring
    condition 1), CI from the Clopper-Pearson interval of ``b/(b + c)``; ``n = b + c``.

    >>> r = mcnemar_exact(15, 3, alternative="greater"); round(r.p_value, 4), round(r.effect, 3)
    (0.0038, 0.667)
    """
    check_alternative(alternative)
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    m = int(b + c)
    if m == 0:
        raise DegenerateDataError("no discordant pairs (b = c = 0): McNemar's test is undefined")
    res = st.binomtest(int(b), m, 0.5, alternative=alternative)
    lo, hi = clopper_pearson(b, m)
    return TestResult(float(b), float(res.pvalue), (b - c) / m, 2 * lo - 1, 2 * hi - 1, m,
                      "exact mcnemar", alternative, "net_discordant_fraction", values={"b": b, "c": c})


def hypergeometric_overlap(k: int, K: int, n: int, N: int) -> TestResult:
    """P(overlap >= k) when a set of ``n`` is drawn at random from ``N`` items of which ``K``
    are in a reference set. Effect: Jaccard index ``k/(K + n - k)``; the CI maps the
    Clopper-Pearson interval of ``k/n`` to Jaccard (approximate). ``values`` holds
    ``expected_overlap = K n / N`` and ``fold_enrichment = k / expected``.

    >>> r = hypergeometric_overlap(23, 46, 67, 256)   # W4's block-3.1 lists
    >>> f"{r.p_value:.1e}", round(r.values["expected_overlap"], 1)
    ('1.0e-04', 12.0)
    """
    if not (0 <= K <= N and 0 <= n <= N and max(0, K + n - N) <= k <= min(K, n)):
        raise ValueError(f"impossible overlap: k={k}, K={K}, n={n}, N={N}")
    if K in (0, N) or n in (0, N):
        raise DegenerateDataError(f"a set is empty or the whole population (K={K}, n={n}, N={N})")
    p = float(st.hypergeom.sf(k - 1, N, K, n))
    jac = lambda kk: kk / (K + n - kk)  # noqa: E731
    lo, hi = clopper_pearson(k, n)
    expected = K * n / N
    return TestResult(k, p, jac(k), jac(lo * n), jac(min(hi * n, min(K, n))), N,
                      "hypergeometric overlap", "greater", "jaccard",
                      values={"expected_overlap": expected, "fold_enrichment": k / expected})


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
