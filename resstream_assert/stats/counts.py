"""Tests on counts and contingency tables (binomial, chi-square, Fisher, Cochran-Armitage,
McNemar, hypergeometric).

The conventions every test here follows are in :mod:`resstream_assert.stats`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from numpy.typing import ArrayLike

from resstream_assert.stats.effects import Rng, as_1d, as_rng, check_alternative, chi2_rows, chunks, clopper_pearson, count_extreme, cramers_v, newcombe_diff_ci, percentile_ci, perm_pvalue
from resstream_assert.errors import DegenerateDataError
from resstream_assert.results import TestResult


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
