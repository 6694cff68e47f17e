"""The calibration scripts' pieces: rates and their intervals, the null transforms, a tiny run of each."""

from __future__ import annotations

import numpy as np

from calibration import calibrate, power
from calibration.synthetic import ALL_VARIANTS, Effects, spectrum_context, synthetic_responses
from resstream_assert.measures import measure_all


def test_rate_rows_say_calibrated_when_the_interval_reaches_alpha():
    ok, bad = calibrate.rate_row("C1", "x", 14, 200), calibrate.rate_row("C1", "x", 30, 200)
    assert ok["ci_low"] < 0.05 < ok["ci_high"] and ok["calibrated"]
    assert bad["ci_low"] > 0.05 and not bad["calibrated"]
    assert calibrate.rate_row("C1", "x", 0, 200)["calibrated"]  # below alpha is calibrated (conservative)
    row = calibrate.rate_row("C1", "x", 1, 200, blocks=(70, 1400))
    assert row["block_rate"] == 0.05 and row["block_ci_low"] < 0.05 < row["block_ci_high"]
    assert "| C1 | x | 1/200 |" in calibrate.markdown([row]) and "70/1400" in calibrate.markdown([row])


def test_synthetic_nulls_and_planted_effects_have_their_known_answers():
    rmap, resp = synthetic_responses(0, n_images=64, channels=8, variants=ALL_VARIANTS)
    assert set(resp) == set(ALL_VARIANTS) and len(rmap) == 8
    r = resp["id"]
    for b in rmap:
        np.testing.assert_allclose(r.get(b, "resid_sum"), r.get(b, "skip_out") + r.get(b, "branch_out"), atol=1e-5)
        assert (r.get(b, "resid_post") >= 0).all()
    ctx = spectrum_context(0, [(0.05, 0.475, 0.475)] * 7, channels=400)
    share = np.mean([(bm.category() == 2).mean() for bm in ctx.analysed()])  # skip = the rare category here
    assert 0.03 < share < 0.07
    # a planted gain-M association is measured with the sign it was planted with
    rmap, resp = synthetic_responses(1, n_images=256, channels=64, effects=Effects(gain_rho=-0.6))
    from scipy.stats import spearmanr

    rhos = [spearmanr(bm.mix_ratio(), bm.branch_gain, nan_policy="omit").statistic
            for bm in measure_all(rmap, resp)[1:] if not rmap[bm.index].projection]
    assert max(rhos) < -0.3


def test_null_transforms_of_real_responses_keep_the_block_arithmetic():
    rmap, resp = synthetic_responses(2, n_images=32, channels=6, variants=("id", "S", "Sinv"))
    rng = np.random.default_rng(0)
    perm = calibrate._permute_branch(rmap, resp, rng)
    for b in rmap:
        a, p = resp["id"].get(b, "branch_out"), perm["id"].get(b, "branch_out")
        assert sorted(map(tuple, a.T)) == sorted(map(tuple, p.T)) and not np.array_equal(a, p)
        np.testing.assert_allclose(perm["S"].get(b, "resid_sum"),
                                   perm["S"].get(b, "skip_out") + perm["S"].get(b, "branch_out"), atol=1e-6)
    swapped = calibrate._swap_directions(rmap, resp, np.random.default_rng(1))
    b = rmap[3]
    s0, i0 = resp["S"].get(b, "branch_out"), resp["Sinv"].get(b, "branch_out")
    s1, i1 = swapped["S"].get(b, "branch_out"), swapped["Sinv"].get(b, "branch_out")
    moved = ~np.all(s0 == s1, axis=0)
    assert moved.any() and np.array_equal(s1[:, moved], i0[:, moved]) and np.array_equal(i1[:, moved], s0[:, moved])


def test_tiny_runs_produce_complete_tables():
    rows = calibrate.run_fpr(2, 16, 64, nulls=("boundary", "exchangeable"))
    assert [(r["claim"], r["null"].split()[0]) for r in rows] == [
        ("C1", "spectrum"), ("C3", "exchangeable"), ("C5", "exchangeable"), ("C6", "exchangeable"),
        ("C8", "exchangeable"), ("C9", "exchangeable")]
    assert all(r["instances"] == 2 and 0 <= r["rate"] <= 1 for r in rows)
    verdict_c1, verdict_c3, rho, rare = power._response_instance((-0.5, 32, 128, 0))
    assert verdict_c1 in ("holds", "fails") and verdict_c3 in ("holds", "fails") and rho < 0 and 0 < rare < 0.5
    table = power.markdown({"responses": [{"rho": -0.3, "channels": 32, "images": 512, "power_c3": 0.5,
                                           "measured_rho": -0.25, "power_c1": 1.0, "rarest_share": 0.14}],
                            "measures": [{"p_min": 0.1, "channels": 32, "power_c1": 0.2}]})
    assert "| -0.3 | 0.50 |" in table and "| 0.1 | 0.20 |" in table
