"""The calibration scripts' pieces: rates and their intervals, the null transforms, a tiny run of each."""

from __future__ import annotations

import numpy as np

from calibration import calibrate, nulls, power, report
from calibration.generator import ALL_VARIANTS, Effects, spectrum_context, synthetic_responses
from resstream_assert.measures import measure_all


def test_the_calibration_check_uses_the_upper_bound():
    """Calibrated means the Clopper-Pearson upper bound of the false-positive rate is <= alpha: a rate of 5%
    over 200 nulls, or 0 of 50 (upper bound 7.1%), does not show calibration (the lower bound did)."""
    at_alpha, too_few, enough = (calibrate.rate_row("C1", "x", k, n) for k, n in ((10, 200), (0, 50), (0, 200)))
    assert at_alpha["ci_low"] < 0.05 < at_alpha["ci_high"] and not at_alpha["calibrated"]
    assert too_few["ci_high"] > 0.05 and not too_few["calibrated"] and too_few["nulls_needed"] == 72
    assert enough["calibrated"] and enough["ci_high"] < 0.02
    assert not calibrate.rate_row("C1", "x", 30, 200)["calibrated"]
    row = calibrate.rate_row("C1", "x", 1, 200, blocks=(70, 1400))
    assert row["block_rate"] == 0.05 and row["block_ci_low"] < 0.05 < row["block_ci_high"]
    table = report.fpr_markdown([row, too_few])
    assert "| C1 | x | 1/200 |" in table and "70/1400" in table and "needs ~72 nulls" in table


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
    for transform, axis in ((nulls.permute_branch, 0), (nulls.decouple_images, 1)):
        out = transform(rmap, resp, rng)
        for b in rmap:
            a, p = resp["id"].get(b, "branch_out"), out["id"].get(b, "branch_out")
            # the same channels (columns) or the same images (rows), reordered
            key = (lambda m: sorted(map(tuple, m.T))) if axis == 0 else (lambda m: sorted(map(tuple, m)))
            assert key(a) == key(p) and not np.array_equal(a, p)
            np.testing.assert_allclose(out["S"].get(b, "resid_sum"),
                                       out["S"].get(b, "skip_out") + out["S"].get(b, "branch_out"), atol=1e-6)
            assert np.array_equal(out["S"].get(b, "skip_out"), resp["S"].get(b, "skip_out"))


def test_tiny_runs_produce_complete_tables_and_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(calibrate, "CHECKPOINTS", tmp_path)
    rows = calibrate.run_fpr(2, 16, 64, ("boundary", "exchangeable"))
    assert [(r["claim"], r["null"].split()[0]) for r in rows] == [
        ("C1", "synthetic"), ("C3", "synthetic:"), ("C5", "synthetic:"), ("C6", "synthetic:"),
        ("C8", "synthetic:"), ("C9", "synthetic:")]
    assert all(r["instances"] == 2 and 0 <= r["rate"] <= 1 for r in rows)
    calls = []
    again = calibrate.Checkpoint("fpr-exchangeable-16ch-64img").run(range(3), lambda s: calls.append(s) or {})
    assert calls == [2] and len(again) == 3  # two instances were read back, only the third ran
    assert power._x1_instance(0.9, 64, 0) == "holds" and power._x1_instance(0.0, 64, 0) == "fails"  # boundary 0.5
    ok, used = power._c10_claim(0.2, 256, power.C10_CONFIGS["defaults: N=40, h=2, zooms 1,2"], 0)
    assert ok and used == 80  # both blocks significant: every set ran
    cells = [{"claim": "C6", "effect": e, "channels": 64, "images": 512, "instances": 30, "power": p}
             for e, p in ((0.0, 0.0), (2.0, 0.9))]
    table = report.power_markdown({"cells": cells}, tmp_path)
    assert "| 2 | 0.90 |" in table and (tmp_path / "power-C6.png").exists()


def test_the_harness_can_see_a_planted_effect_hold():
    """A null on which a claim can never hold shows nothing: at the harness's own options (the three-answer rule
    needs each block's bootstrap interval) planted effects must hold, claim by claim, before a 0/600 means
    anything. With n_boot=0 C3, C5, C8 and C9 were inconclusive on every instance, planted or not."""
    assert calibrate.N_BOOT > 0
    scale = power._scale_instance(2.0, 128, 512, 0, 0.6)  # a scale copy of 2 SD in 60% of 128 channels
    assert {c: scale[c][0] for c in power.SCALE_CLAIMS} == {c: "holds" for c in power.SCALE_CLAIMS}
    assert power._c3_instance(-0.5, 256, 512, 0)["C3"] == ["holds"]
    assert power._c3_instance(0.0, 256, 512, 0)["C3"] != ["holds"]
