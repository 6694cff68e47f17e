"""C4 on synthetic responses: no circle (null rate at alpha), heterogeneity decides "mixed"."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from calibration.generator import Effects, synthetic_responses
from resstream_assert.claims import ClaimOptions
from resstream_assert.claims.base import split_halves
from resstream_assert.claims.verdict_stability import evaluate_responses
from resstream_assert.results import Verdict
from resstream_assert.stats import cochran_q, welch_difference

ALPHA = 0.05
INDEPENDENT = Effects(kappa=(0.0, 0.0))  # input and branch independent: no inhibition anywhere


def _c4(seed: int, effects: Effects, channels: int = 256):
    rmap, resp = synthetic_responses(seed, n_images=512, channels=channels, effects=effects)
    return evaluate_responses(rmap, resp, ["C4"], options=ClaimOptions(n_boot=0), seed=seed)["C4"]


def test_null_rate_at_256_channels_is_at_most_alpha():
    """Input and branch independent: the block test rejects at most at alpha, and "mixed" holds at most
    that often (the grouping by M on the same images as B(X_I) rejected in 18.6% of blocks, 33% mixed)."""
    n_inst = 12
    results = [_c4(seed, INDEPENDENT) for seed in range(n_inst)]
    tested = [r for res in results for r in res.rows if np.isfinite(r.p_value)]  # every block with a test
    rejected = sum(r.p_value < ALPHA for r in tested)
    assert len(tested) >= 0.9 * 7 * n_inst
    # The acceptance region of a test whose size is alpha (one-sided, 1%): a deterministic bound.
    assert rejected <= binom.ppf(0.99, len(tested), ALPHA), (rejected, len(tested))
    mixed = sum(res.verdict == Verdict.HOLDS for res in results)
    assert mixed <= binom.ppf(0.99, n_inst, ALPHA), mixed


def test_heterogeneous_inhibition_holds_and_uniform_or_null_fails():
    mixed = _c4(0, Effects(kappa=(0.0, 0.0), inhibition=0.4, inhibition_blocks=(1, 2, 3)), channels=128)
    assert mixed.verdict == Verdict.HOLDS and mixed.values["p_heterogeneity"] < 1e-6
    effects = [r.effect for r in mixed.rows]
    assert max(effects[:3]) < -1.0 and min(effects[3:]) > -0.3  # planted blocks: branch SDs lower
    assert all(r.ci_low <= r.effect <= r.ci_high for r in mixed.rows)
    # planted alike in every block (each block's realized effect still varies a little with its channels)
    uniform = _c4(1, Effects(kappa=(0.0, 0.0), inhibition=0.4), channels=128)
    assert uniform.verdict == Verdict.FAILS and uniform.values["n_significant"] == 7  # homogeneous: not mixed
    assert uniform.values["p_heterogeneity"] > ALPHA
    assert _c4(1, INDEPENDENT, channels=128).verdict == Verdict.FAILS


def test_groups_and_compared_quantity_use_disjoint_images():
    a, b = split_halves(513, np.random.default_rng(3))
    assert len(a) == 256 and len(b) == 257 and not np.intersect1d(a, b).size
    res = _c4(2, INDEPENDENT, channels=64)
    row = next(r for r in res.rows if r.verdict in (Verdict.HOLDS, Verdict.FAILS))
    assert row.values["n_images_m"] + row.values["n_images_b"] == 512
    assert res.to_dict() == _c4(2, INDEPENDENT, channels=64).to_dict()  # seeded split


def test_welch_and_cochran_q_match_scipy_and_their_definitions():
    from scipy.stats import chi2, ttest_ind

    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 30), rng.normal(0.5, 2, 40)
    w = welch_difference(x, y, alternative="less")
    assert w.p_value == pytest.approx(ttest_ind(x, y, equal_var=False, alternative="less").pvalue)
    assert w.values["se"] == pytest.approx(np.sqrt(x.var(ddof=1) / 30 + y.var(ddof=1) / 40))
    eff, se = np.array([0.1, -0.2, 0.5]), np.array([0.1, 0.2, 0.1])
    q = cochran_q(eff, se)
    wts = 1 / se**2
    pooled = (wts * eff).sum() / wts.sum()
    assert q.statistic == pytest.approx((wts * (eff - pooled) ** 2).sum())
    assert q.p_value == pytest.approx(chi2.sf(q.statistic, 2))
