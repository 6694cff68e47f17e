"""Known answers, calibration and controls for resstream_assert.stats (numpy/scipy only).

Every random quantity is seeded; calibration checks use 200 seeded null datasets, so
they are deterministic, and their bounds ([0.02, 0.09] around alpha = 0.05) leave about
2.5 binomial standard errors either side.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats as st

from resstream_assert import stats as S
from resstream_assert.errors import ResstreamError
from resstream_assert.errors import DegenerateDataError


def _rejection_rate(pvalue_of, n_datasets: int = 200, seed: int = 20240601) -> float:
    seeds = np.random.SeedSequence(seed).spawn(n_datasets)
    ps = np.array([pvalue_of(np.random.default_rng(s)) for s in seeds])
    return float(np.mean(ps < 0.05))


def _mc_tol(p: float, n_resamples: int) -> float:
    """Four standard errors of the difference of two independent Monte-Carlo p-values."""
    return 4 * math.sqrt(2 * max(p * (1 - p), 1e-4) / n_resamples)


# --- spearman_permutation ------------------------------------------------------------------

def test_spearman_rho_matches_scipy_with_ties():
    x = np.array([0, 0, 0, 1.2, 3.4, 5, 5, 5, 10, 10, 0.7, 2.2])  # coded 0/5/10 ties, as in M
    y = np.array([3.0, 2.5, 2.5, 2.0, 1.7, 1.0, 1.2, 0.8, 0.1, 0.3, 2.1, 1.9])
    r = S.spearman_permutation(x, y, alternative="less", rng=0, n_resamples=999, n_boot=0)
    assert r.statistic == pytest.approx(st.spearmanr(x, y).statistic, abs=1e-12)
    assert r.effect == r.statistic and r.n == 12 and r.effect_name == "spearman_rho"
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high)  # n_boot=0 skips the CI


def test_spearman_pvalue_matches_exact_enumeration():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 5.0])
    rho = st.spearmanr(x, y).statistic
    null = np.array([st.spearmanr(x, np.array(p)).statistic for p in itertools.permutations(y)])
    exact = float(np.mean(null >= rho - 1e-12))
    r = S.spearman_permutation(x, y, alternative="greater", rng=1, n_resamples=20000, n_boot=0)
    assert abs(r.p_value - exact) < 4 * math.sqrt(exact * (1 - exact) / 20000) + 1e-4


def test_spearman_negative_control_holds_and_ci_excludes_zero():
    g = np.random.default_rng(3)
    x = g.normal(size=40)
    y = -x + 0.1 * g.normal(size=40)
    less = S.spearman_permutation(x, y, alternative="less", rng=4, n_resamples=999)
    assert less.p_value < 0.01 and less.p_value == pytest.approx(1 / 1000)
    assert less.effect < -0.9 and less.ci_high < 0 and less.ci_low <= less.effect <= less.ci_high
    greater = S.spearman_permutation(x, y, alternative="greater", rng=4, n_resamples=999, n_boot=0)
    assert greater.p_value > 0.99
    two = S.spearman_permutation(x, y, alternative="two-sided", rng=4, n_resamples=999, n_boot=0)
    assert two.p_value < 0.01


def test_spearman_null_calibration():
    rate = _rejection_rate(lambda g: S.spearman_permutation(
        g.normal(size=30), g.normal(size=30), alternative="less", rng=g,
        n_resamples=999, n_boot=0).p_value)
    assert 0.02 <= rate <= 0.09  # measured 0.045 (0.0475 over 2000 datasets)


def test_spearman_seeds_reproducible_and_mc_close():
    g = np.random.default_rng(5)
    x = g.normal(size=25)
    y = 0.3 * x + g.normal(size=25)
    a = S.spearman_permutation(x, y, alternative="greater", rng=11, n_resamples=2000, n_boot=500)
    b = S.spearman_permutation(x, y, alternative="greater", rng=11, n_resamples=2000, n_boot=500)
    c = S.spearman_permutation(x, y, alternative="greater", rng=12, n_resamples=2000, n_boot=500)
    assert a == b  # bit-identical, CI included
    assert abs(a.p_value - c.p_value) < _mc_tol(a.p_value, 2000)
    assert a.statistic == c.statistic
    # A Generator and the equivalent int seed give the same answer.
    d = S.spearman_permutation(x, y, alternative="greater", rng=np.random.default_rng(11),
                               n_resamples=2000, n_boot=500)
    assert d == a


def test_spearman_drops_nan_pairs_and_reports_count():
    g = np.random.default_rng(6)
    x, y = g.normal(size=20), g.normal(size=20)
    xn, yn = np.append(x, [np.nan, 1.0]), np.append(y, [2.0, np.nan])
    clean = S.spearman_permutation(x, y, alternative="less", rng=7, n_resamples=499, n_boot=200)
    dirty = S.spearman_permutation(xn, yn, alternative="less", rng=7, n_resamples=499, n_boot=200)
    assert dirty.n == 20 and dirty.n_dropped == 2 and clean.n_dropped == 0
    assert (dirty.statistic, dirty.p_value, dirty.ci_low) == (clean.statistic, clean.p_value, clean.ci_low)


@pytest.mark.parametrize("x, y", [
    ([1.0, 1, 1, 1, 1], [1.0, 2, 3, 4, 5]),          # constant x (e.g. NC-rand: all gamma = 1)
    ([1.0, 2, 3, 4, 5], [7.0, 7, 7, 7, np.nan]),     # constant y after NaN drop
    ([1.0, 2], [2.0, 1]),                           # too few pairs
])
def test_spearman_degenerate_raises(x, y):
    with pytest.raises(DegenerateDataError, match="constant|needs"):
        S.spearman_permutation(x, y, alternative="less", rng=0, n_resamples=99)
    assert issubclass(DegenerateDataError, ValueError) and issubclass(DegenerateDataError, ResstreamError)


def test_rng_must_be_explicit_and_alternative_validated():
    with pytest.raises(TypeError, match="Generator"):
        S.spearman_permutation([1, 2, 3, 4], [4, 3, 2, 1], alternative="less", rng=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alternative"):
        S.spearman_permutation([1, 2, 3, 4], [4, 3, 2, 1], alternative="lower", rng=0)


# --- partial_spearman ----------------------------------------------------------------------

def test_partial_spearman_matches_closed_form_and_removes_confound():
    g = np.random.default_rng(8)
    z = g.normal(size=60)
    x, y = z + 0.7 * g.normal(size=60), z + 0.7 * g.normal(size=60)
    r = S.partial_spearman(x, y, z, alternative="two-sided", rng=9, n_resamples=999, n_boot=300)
    rxy, rxz, ryz = (st.spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    expected = (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert r.statistic == pytest.approx(expected, abs=1e-10)
    assert r.p_value > 0.05 and r.ci_low < 0 < r.ci_high  # related only through z
    plain = S.spearman_permutation(x, y, alternative="two-sided", rng=9, n_resamples=999, n_boot=0)
    assert plain.p_value < 0.01
    # A duplicated or constant covariate must not remove an extra dimension.
    dup = S.partial_spearman(x, y, np.column_stack([z, z]), alternative="two-sided", rng=9,
                             n_resamples=999, n_boot=0)
    assert dup.statistic == pytest.approx(r.statistic, abs=1e-10)
    const = S.partial_spearman(x, y, np.ones(60), alternative="two-sided", rng=9, n_resamples=99, n_boot=0)
    assert const.statistic == pytest.approx(rxy, abs=1e-10)


def test_partial_spearman_detects_direct_effect_and_is_calibrated():
    g = np.random.default_rng(10)
    z = g.normal(size=50)
    x = g.normal(size=50)
    y = -x + z + 0.5 * g.normal(size=50)
    r = S.partial_spearman(x, y, z, alternative="less", rng=1, n_resamples=999, n_boot=0)
    assert r.p_value < 0.01 and r.effect < -0.5
    rate = _rejection_rate(lambda g: S.partial_spearman(
        g.normal(size=30), g.normal(size=30), g.normal(size=30), alternative="two-sided",
        rng=g, n_resamples=499, n_boot=0).p_value)
    assert 0.02 <= rate <= 0.09  # measured 0.045 (0.0415 over 2000 datasets)


# --- mann_whitney --------------------------------------------------------------------------

def test_mann_whitney_matches_scipy_and_sign_convention():
    x = [3.1, 4.0, 5.2, 2.2, 6.0, 4.4]
    y = [1.0, 2.5, 0.3, 2.2, 1.9]
    r = S.mann_whitney(x, y, alternative="greater", rng=0, n_boot=1000)
    ref = st.mannwhitneyu(x, y, alternative="greater")
    assert r.statistic == ref.statistic and r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.effect == pytest.approx(2 * ref.statistic / 30 - 1)
    assert r.effect > 0 and r.ci_low <= r.effect <= r.ci_high  # x tends to exceed y -> positive
    flipped = S.mann_whitney(y, x, alternative="less", rng=0, n_boot=0)
    assert flipped.effect == pytest.approx(-r.effect) and flipped.p_value == pytest.approx(r.p_value)
    assert S.mann_whitney([3, 4, 5], [0, 1, 2], alternative="greater", rng=0, n_boot=0).effect == 1.0


def test_mann_whitney_calibration_nan_and_degenerate():
    rate = _rejection_rate(lambda g: S.mann_whitney(
        g.normal(size=20), g.normal(size=25), alternative="greater", rng=g, n_boot=0).p_value)
    assert 0.02 <= rate <= 0.09  # measured 0.055 (0.054 over 2000 datasets)
    r = S.mann_whitney([1.0, np.nan, 3.0, 4.0], [0.5, 2.0, np.nan], alternative="greater", rng=0, n_boot=0)
    assert (r.n, r.n_dropped, r.values["n_x"]) == (5, 2, 3)
    with pytest.raises(DegenerateDataError):
        S.mann_whitney([np.nan], [1.0, 2.0], alternative="greater", rng=0)
    with pytest.raises(DegenerateDataError):
        S.mann_whitney([2.0, 2.0], [2.0, 2.0, 2.0], alternative="greater", rng=0)


# --- proportions, tables, trends -----------------------------------------------------------

def test_binomial_proportion_known_answers():
    r = S.binomial_proportion(12, 100, p0=0.05)
    assert r.p_value == pytest.approx(st.binomtest(12, 100, 0.05, alternative="greater").pvalue)
    ci = st.binomtest(12, 100).proportion_ci(method="exact")
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high)) and r.effect == 0.12
    zero = S.binomial_proportion(0, 20)
    assert zero.ci_low == 0.0 and zero.ci_high == pytest.approx(1 - 0.025 ** (1 / 20))
    assert zero.p_value == 1.0
    with pytest.raises(DegenerateDataError):
        S.binomial_proportion(0, 0)
    with pytest.raises(ValueError):
        S.binomial_proportion(5, 3)


def test_chi2_mc_known_answers_and_empty_margins():
    t = np.array([[30, 10], [10, 30]])
    r = S.chi2_independence_mc(t, rng=0, n_resamples=999, n_boot=500)
    assert r.statistic == pytest.approx(st.chi2_contingency(t, correction=False).statistic)  # 20.0
    assert r.effect == pytest.approx(0.5) and r.ci_low < 0.5 < r.ci_high
    assert r.p_value == pytest.approx(1 / 1000) and r.n == 80
    t3 = np.array([[20, 15, 25], [18, 22, 10], [12, 14, 16]])
    big = S.chi2_independence_mc(t3, rng=1, n_resamples=4000, n_boot=0)
    asym = st.chi2_contingency(t3, correction=False)
    assert abs(big.p_value - asym.pvalue) < 0.03  # MC error + asymptotic approximation
    padded = np.zeros((4, 4), int)
    padded[np.ix_([0, 2, 3], [0, 1, 3])] = t3
    assert S.chi2_independence_mc(padded, rng=1, n_resamples=4000, n_boot=0) == big
    with pytest.raises(DegenerateDataError, match="2×2"):
        S.chi2_independence_mc([[5, 0], [7, 0]], rng=0)


def test_chi2_mc_null_calibration_and_seeds():
    rate = _rejection_rate(lambda g: S.chi2_independence_mc(
        g.multinomial(120, np.full(6, 1 / 6)).reshape(2, 3), rng=g, n_resamples=499, n_boot=0).p_value)
    assert 0.02 <= rate <= 0.09  # measured 0.065
    t = [[12, 8, 5], [6, 9, 11]]
    a, b = (S.chi2_independence_mc(t, rng=3, n_resamples=999) for _ in range(2))
    c = S.chi2_independence_mc(t, rng=4, n_resamples=999)
    assert a == b and abs(a.p_value - c.p_value) < _mc_tol(a.p_value, 999)


def test_fisher_exact_greater_known_answers_and_exact_size():
    r = S.fisher_exact_greater(9, 10, 2, 10)
    ref = st.fisher_exact([[9, 1], [2, 8]], alternative="greater")
    assert r.p_value == pytest.approx(ref.pvalue) and r.statistic == pytest.approx(ref.statistic)
    assert r.effect == pytest.approx(0.7)
    # Newcombe (1998) worked example, method 10: 56/70 - 48/80 -> [0.0524, 0.3339].
    assert S.fisher_exact_greater(56, 70, 48, 80).confidence_interval().low == pytest.approx(0.0524, abs=1e-4)
    assert S.fisher_exact_greater(56, 70, 48, 80).ci_high == pytest.approx(0.3339, abs=1e-4)
    # Exact size under H0 (p1 = p2 = 0.3, n = 40 each): valid (<= alpha) and not absurdly
    # conservative. Exact is better than simulation here: Fisher's test is discrete.
    n, k = 40, np.arange(41)
    w = st.binom.pmf(k, n, 0.3)
    reject = np.array([[S.fisher_exact_greater(int(a), n, int(b), n).p_value < 0.05 for b in k] for a in k])
    size = float((w[:, None] * w[None, :] * reject).sum())
    assert 0.02 <= size <= 0.05  # measured 0.0306
    assert S.fisher_exact_greater(40, 40, 0, 40).statistic == math.inf
    with pytest.raises(DegenerateDataError):
        S.fisher_exact_greater(0, 0, 1, 5)


def test_cochran_armitage_hand_computation_and_identities():
    counts, totals, scores = np.array([8, 5, 2]), np.array([20, 20, 20]), np.array([0.0, 1, 2])
    r = S.cochran_armitage(counts, totals, alternative="less")
    z = -6 / math.sqrt(0.25 * 0.75 * 40)  # T = sum k (s - sbar); Var = pbar(1-pbar) sum n (s - sbar)^2
    assert r.statistic == pytest.approx(z) and r.p_value == pytest.approx(st.norm.cdf(z))
    # Identities on the expanded 0/1 data: z^2 = N r^2, and the effect is the OLS slope.
    s_exp = np.repeat(scores, totals)
    o_exp = np.concatenate([np.r_[np.ones(k), np.zeros(t - k)] for k, t in zip(counts, totals)])
    assert r.statistic**2 == pytest.approx(60 * np.corrcoef(s_exp, o_exp)[0, 1] ** 2)
    assert r.effect == pytest.approx(np.polyfit(s_exp, o_exp, 1)[0]) and r.ci_high < 0
    up = S.cochran_armitage(counts[::-1], totals, alternative="greater", scores=[1, 2, 3])
    assert up.statistic == pytest.approx(-z) and up.p_value == pytest.approx(r.p_value)
    # Empty groups are dropped; no variation in the outcome is degenerate.
    assert S.cochran_armitage([8, 0, 5, 2], [20, 0, 20, 20], [0, 5, 1, 2], alternative="less") == r
    with pytest.raises(DegenerateDataError):
        S.cochran_armitage([0, 0, 0], [10, 10, 10], alternative="less")


# --- paired tests --------------------------------------------------------------------------

def test_wilcoxon_matches_scipy_and_hand_effect():
    d = np.array([1.0, 2, 3, 4, -0.5])
    r = S.wilcoxon_signed_rank(d, alternative="greater", rng=0, n_boot=500)
    assert r.p_value == pytest.approx(st.wilcoxon(d, alternative="greater").pvalue)
    assert r.statistic == 14.0 and r.effect == pytest.approx(13 / 15)  # T+ = 14, T- = 1
    g = np.random.default_rng(12)
    x, y = g.normal(size=40) + 0.8, g.normal(size=40)
    x[:3] = y[:3]  # three zero differences: discarded, reported
    paired = S.wilcoxon_signed_rank(x, y, alternative="greater", rng=1, n_boot=500)
    diff = S.wilcoxon_signed_rank(x - y, alternative="greater", rng=1, n_boot=500)
    assert paired == diff and paired.n == 37 and paired.values["n_zero"] == 3
    # Zeros are discarded *before* scipy sees the data, so scipy can use its exact null
    # (scipy itself falls back to the normal approximation whenever zeros are present).
    nz = (x - y)[3:]
    assert paired.p_value == pytest.approx(st.wilcoxon(nz, alternative="greater").pvalue)
    assert paired.p_value < 0.01 and paired.ci_low > 0
    with pytest.raises(DegenerateDataError):
        S.wilcoxon_signed_rank([0.0, 0.0, np.nan], alternative="greater", rng=0)


def test_wilcoxon_null_calibration():
    rate = _rejection_rate(lambda g: S.wilcoxon_signed_rank(
        g.normal(size=25), alternative="greater", rng=g, n_boot=0).p_value)
    assert 0.02 <= rate <= 0.09  # measured 0.06


def test_sign_and_mcnemar_known_answers():
    s = S.sign_test([1.0, 2, 3, 4, -1, 5, 6, 7, 0, np.nan], alternative="greater")
    assert (s.statistic, s.n, s.n_dropped, s.values["n_zero"]) == (7, 8, 1, 1)
    assert s.p_value == pytest.approx(st.binomtest(7, 8, 0.5, alternative="greater").pvalue)
    assert s.effect == 0.875
    m = S.mcnemar_exact(15, 3, alternative="greater")
    assert m.p_value == pytest.approx(st.binomtest(15, 18, 0.5, alternative="greater").pvalue)
    ci = st.binomtest(15, 18).proportion_ci(method="exact")
    assert m.effect == pytest.approx(12 / 18) and m.ci_low == pytest.approx(2 * ci.low - 1)
    assert S.mcnemar_exact(3, 15, alternative="greater").p_value > 0.99
    with pytest.raises(DegenerateDataError):
        S.mcnemar_exact(0, 0, alternative="greater")


def test_hypergeometric_overlap_w4_reference():
    r = S.hypergeometric_overlap(23, 46, 67, 256)  # paper-claims W4: p ~ 1.0e-4, 12.0 expected
    assert r.p_value == pytest.approx(sum(st.hypergeom.pmf(k, 256, 46, 67) for k in range(23, 47)))
    assert f"{r.p_value:.1e}" == "1.0e-04"
    assert r.values["expected_overlap"] == pytest.approx(12.04, abs=0.01)
    assert r.effect == pytest.approx(23 / 90) and r.ci_low < r.effect < r.ci_high
    assert S.hypergeometric_overlap(12, 46, 67, 256).p_value > 0.4
    with pytest.raises(ValueError):
        S.hypergeometric_overlap(50, 46, 67, 256)
    with pytest.raises(DegenerateDataError):
        S.hypergeometric_overlap(46, 46, 256, 256)


# --- ablation helpers, bootstrap -----------------------------------------------------------

def test_empirical_pvalue_rules_and_calibration():
    assert S.empirical_pvalue(5.0, [1.0, 2.0, 6.0]) == 0.5
    assert S.empirical_pvalue(5.0, [1.0, 5.0, 6.0, np.nan]) == 0.75  # ties count as extreme
    assert S.empirical_pvalue(5.0, [1.0, 2.0, 6.0], alternative="less") == 0.75
    assert S.empirical_pvalue(100.0, np.arange(99.0)) == 0.01
    rate = _rejection_rate(lambda g: S.empirical_pvalue(g.normal(), g.normal(size=99)))
    assert 0.02 <= rate <= 0.09  # measured 0.035
    with pytest.raises(DegenerateDataError):
        S.empirical_pvalue(1.0, [np.nan])


def test_trend_slope_matches_polyfit_rowwise_with_nan():
    zoom = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    g = np.random.default_rng(13)
    ys = g.normal(size=(4, 6)) + np.arange(4)[:, None] * zoom
    slopes = S.trend_slope(zoom, ys)
    assert slopes == pytest.approx([np.polyfit(zoom, row, 1)[0] for row in ys])
    ys[0, 2] = np.nan
    assert S.trend_slope(zoom, ys)[0] == pytest.approx(np.polyfit(np.delete(zoom, 2), np.delete(ys[0], 2), 1)[0])
    assert isinstance(S.trend_slope(zoom, ys[1]), float)
    assert math.isnan(S.trend_slope([1.0, 1.0], [2.0, 3.0]))


def test_bootstrap_ci_percentile_paired_and_vectorized_agree():
    g = np.random.default_rng(14)
    x = g.normal(loc=2.0, size=200)
    lo, hi = S.bootstrap_ci(np.mean, x, n_resamples=2000, rng=0)
    t = st.t.ppf(0.975, 199) * x.std(ddof=1) / math.sqrt(200)
    assert lo == pytest.approx(x.mean() - t, abs=0.03) and hi == pytest.approx(x.mean() + t, abs=0.03)
    loop = S.bootstrap_ci(lambda a: float(np.mean(a)), x, n_resamples=2000, rng=0)
    assert loop == pytest.approx((lo, hi), abs=1e-12)  # same draws, vectorised or not
    y = x + g.normal(scale=0.1, size=200)
    diff_paired = S.bootstrap_ci(lambda a, b, axis: np.mean(a - b, axis=axis), x, y, n_resamples=1000, rng=1)
    diff_indep = S.bootstrap_ci(lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                                x, y, n_resamples=1000, rng=1, paired=False)
    assert diff_paired[1] - diff_paired[0] < 0.2 * (diff_indep[1] - diff_indep[0])
    assert all(math.isnan(v) for v in S.bootstrap_ci(np.mean, [1.0, np.nan, 3.0], n_resamples=0, rng=0))
    with pytest.raises(DegenerateDataError):
        S.bootstrap_ci(np.mean, [np.nan], n_resamples=10, rng=0)


# --- multiplicity and verdicts -------------------------------------------------------------

def test_holm_hand_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    p = [0.01, 0.04, 0.03, 0.005]
    assert S.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = S.holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert math.isnan(with_nan[1]) and np.delete(with_nan, 1) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped
    assert S.holm(np.array([[0.01, 0.04], [0.03, 0.005]])).shape == (2, 2)
    g = np.random.default_rng(15)
    ps = g.uniform(size=30) ** 3
    adj = S.holm(ps)
    order = np.argsort(ps)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= ps) and np.all(adj <= 1)
    with pytest.raises(ValueError):
        S.holm([0.2, 1.5])
