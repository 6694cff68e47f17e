"""Three answers, not two: holds, fails only with evidence against, inconclusive with what would decide it;
the claim over blocks; the gate without and with a baseline (its noise model); verdict stability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resstream_assert.claims import REGISTRY, ClaimContext, ClaimOptions
from resstream_assert.claims.base import row, summarize
from resstream_assert.claims.decision import Boundary, over_blocks
from resstream_assert.errors import ConfigError
from resstream_assert.gate import BaselineCheck, Outcome, decide
from resstream_assert.gate.baseline import compare
from resstream_assert.results import BlockRow, TestResult, Verdict
from resstream_assert.stats import binomial_proportion
from resstream_assert.stats.pooling import random_effects, se_from_ci


def ctx_for(claim: str, **options) -> ClaimContext:
    return ClaimContext("m", "torch", None, (), {}, options=ClaimOptions(**options)).for_claim(REGISTRY[claim])


def rho_row(block: str, rho: float, lo: float, hi: float, p: float, n: int = 64) -> BlockRow:
    t = TestResult(statistic=rho, p_value=p, effect=rho, ci_low=lo, ci_high=hi, n=n, method="spearman",
                   alternative="less", effect_name="rho")
    return row(block, t)


# --- a block: where its interval lies against the boundary -------------------------------------

def test_c1_seven_of_64_overwrite_channels_is_inconclusive_not_fails():
    """11% is not significantly above 5% at 64 channels, and not below it either: undecided (it 'failed' before)."""
    r = summarize(ctx_for("C1"), [row("layer2.1", binomial_proportion(7, 64, p0=0.05))], direction=1)
    assert r.verdict == Verdict.INCONCLUSIVE and r.rows[0].verdict == Verdict.INCONCLUSIVE
    v = r.rows[0].values
    assert 0.05 < v["mde"] < 0.25 and v["n_to_decide"] > 64  # what would decide it is stated
    assert "undecided" in r.reason and "channels per block would decide" in r.reason


def test_c1_none_of_256_channels_in_a_category_is_evidence_against():
    """0/256: the upper Clopper-Pearson bound (1.4%) is below 5%, so the spectrum claim fails with evidence."""
    r = summarize(ctx_for("C1"), [row("layer4.1", binomial_proportion(0, 256, p0=0.05))], direction=1)
    assert r.verdict == Verdict.FAILS and r.rows[0].verdict == Verdict.FAILS
    assert r.ci_high < 0.05 and r.ci_low >= 0  # one block: its own (asymmetric) interval, not a normal one


def test_c1_a_planted_spectrum_holds():
    r = summarize(ctx_for("C1"), [row("b", binomial_proportion(60, 256, p0=0.05))], direction=1)
    assert r.verdict == Verdict.HOLDS


@pytest.mark.parametrize("lo, hi, expected", [(-0.6, -0.2, Verdict.HOLDS), (-0.05, 0.3, Verdict.FAILS),
                                              (-0.4, 0.1, Verdict.INCONCLUSIVE), (-0.3, -0.08, Verdict.INCONCLUSIVE)])
def test_c3_compares_the_whole_interval_with_minus_0_1(lo, hi, expected):
    r = summarize(ctx_for("C3"), [rho_row("b", (lo + hi) / 2, lo, hi, p=0.001 if hi < 0 else 0.5)], direction=-1)
    assert r.rows[0].verdict == expected


def test_a_per_claim_minimum_effect_moves_the_boundary():
    rows = [rho_row("b", -0.3, -0.45, -0.15, 0.001)]
    assert summarize(ctx_for("C3"), rows, direction=-1).verdict == Verdict.HOLDS
    stricter = ctx_for("C3", min_effect=(("C3", 0.2),))
    assert stricter.boundary().delta == -0.2
    assert summarize(stricter, rows, direction=-1).verdict == Verdict.INCONCLUSIVE


@pytest.mark.parametrize("values, message", [(["0.1"], "is not CLAIM=VALUE"), (["C99=0.1"], "unknown claim"),
                                             (["C3=-1"], "finite number >= 0"), (["C11=0.1"], "no minimum effect")])
def test_min_effect_option_is_per_claim_and_checked(values, message):
    from resstream_assert.config import build_run_config

    with pytest.raises(ConfigError, match=message):
        build_run_config({"min-effect": values})
    assert build_run_config({"min-effect": ["c3=0.2"]}).claim_options["min_effect"] == ["C3=0.2"]


# --- the claim over blocks ---------------------------------------------------------------------

def test_c9_one_testable_block_of_seven_is_inconclusive_not_holds():
    """It returned 'holds in 1/1 tested blocks' before: untestable blocks count in the analysed seven."""
    few = [row(f"layer{i}", note="3 selected channels < 6") for i in range(6)]
    strong = TestResult(statistic=0, p_value=0.001, effect=0.7, ci_low=0.5, ci_high=0.85, n=40,
                        method="wilcoxon", alternative="greater", effect_name="rank-biserial")
    r = summarize(ctx_for("C9"), few + [row("layer4.1", strong)], direction=1)
    assert r.rows[-1].verdict == Verdict.HOLDS
    assert r.verdict == Verdict.INCONCLUSIVE and r.values["blocks_needed"] == 4 and r.values["blocks_analysed"] == 7


def test_a_claim_fails_once_it_cannot_reach_its_majority():
    t = over_blocks([Verdict.FAILS] * 4 + [Verdict.HOLDS] * 3, mostly=0.5)
    assert (t.need, t.verdict) == (4, Verdict.FAILS)
    assert over_blocks([Verdict.FAILS] * 3 + [Verdict.HOLDS] * 3 + [Verdict.INCONCLUSIVE], 0.5).verdict \
        == Verdict.INCONCLUSIVE
    assert over_blocks([Verdict.NOT_APPLICABLE] * 2 + [Verdict.HOLDS], 0.5).analysed == 1


def test_the_claim_effect_is_the_random_effects_combination_of_its_blocks():
    rows = [rho_row("a", -0.5, -0.7, -0.3, 0.001), rho_row("b", -0.1, -0.35, 0.15, 0.2),
            rho_row("c", -0.35, -0.5, -0.2, 0.001)]
    r = summarize(ctx_for("C3"), rows, direction=-1)
    want = random_effects([-0.5, -0.1, -0.35], se_from_ci([-0.7, -0.35, -0.5], [-0.3, 0.15, -0.2]) ** 2)
    assert r.effect == pytest.approx(want.effect) and r.ci_low == pytest.approx(want.ci_low)
    assert want.tau2 > 0 and r.ci_high - r.ci_low > 0.2  # the blocks disagree: a wide interval, honestly


def test_boundary_refuses_a_direction_that_is_not_a_sign():
    with pytest.raises(ValueError):
        Boundary(0.1, 0, "share")


# --- the gate without a baseline ---------------------------------------------------------------

def _result(verdict: str, gate: bool = True, lo: float = -0.4, hi: float = 0.1):
    r = summarize(ctx_for("C3"), [rho_row("b", (lo + hi) / 2, lo, hi, 0.01)], direction=-1)
    return r.with_(verdict=Verdict(verdict), gate=gate)


def test_an_undecided_gated_claim_fails_its_test_as_undecided():
    d = decide(_result("inconclusive"))
    assert d.outcome == Outcome.UNDECIDED and "undecided" in d.reason and "cannot tell" in d.reason
    assert decide(_result("inconclusive"), survey=True).outcome == Outcome.XFAIL
    assert decide(_result("inconclusive", gate=False)).outcome == Outcome.SKIP  # report-only never fails
    assert decide(_result("not_applicable")).outcome == Outcome.SKIP
    assert decide(_result("holds")).outcome == Outcome.PASS
    assert decide(_result("fails")).outcome == Outcome.FAIL


def test_an_undecided_claim_passes_against_a_baseline_that_was_undecided_too():
    d = decide(_result("inconclusive"), baseline=BaselineCheck("b.json", verdict="inconclusive"))
    assert d.outcome == Outcome.XFAIL and "as in the baseline" in d.reason


# --- the baseline's noise model ----------------------------------------------------------------

def _report(verdict: str, effect: float, lo: float, hi: float) -> dict:
    block = {"block": "layer2.1", "verdict": verdict, "effect": effect, "ci_low": lo, "ci_high": hi}
    return {"results": [{"model": "m", "backend": "torch", "claim": "C1", "gate": True, "verdict": verdict,
                         "effect": effect, "ci_low": lo, "ci_high": hi, "rows": [block]}]}


def test_a_verdict_change_inside_the_stored_interval_is_unstable_not_a_drift():
    base, now = _report("holds", 0.09, 0.06, 0.13), _report("inconclusive", 0.08, 0.045, 0.12)
    diff = compare(base, now)
    assert not diff.failed and diff.counts().get("unstable") == 2  # claim and block
    d = decide(_result("inconclusive"), baseline=BaselineCheck("b.json", "holds", diff.failed, unstable=True))
    assert d.outcome == Outcome.XFAIL and "unstable" in d.reason


def test_the_decided_rule_fails_a_claim_the_baseline_decided_and_this_run_cannot():
    base, now = _report("holds", 0.09, 0.06, 0.13), _report("inconclusive", 0.08, 0.045, 0.12)
    rules = ["verdict", "decided"]
    assert not compare(base, now).failed  # the default rules: unstable, within noise
    diff = compare(base, now, rules)
    assert diff.failed and any(e.quantity == "decided" and e.status == "FAIL" for e in diff.entries)
    d = decide(_result("inconclusive"), baseline=BaselineCheck("b.json", "holds", diff.failed, diff.table()))
    assert d.outcome == Outcome.FAIL
    # controls: the same verdict, a claim undecided in the baseline too, and a change towards a decision pass it
    for b, n in (("holds", "holds"), ("inconclusive", "inconclusive"), ("inconclusive", "holds")):
        assert not compare(_report(b, 0.09, 0.06, 0.13), _report(n, 0.09, 0.06, 0.13), rules).failed, (b, n)
    # a report-only claim is only warned about, as with every rule
    ro = lambda r: {"results": [{**r["results"][0], "gate": False}]}  # noqa: E731
    assert not compare(ro(base), ro(now), rules).failed


def test_a_typo_in_a_rule_word_is_refused():
    from resstream_assert.errors import CompareFailError
    from resstream_assert.gate.rules import parse_rule

    for typo in ("decide", "Decided", "decided>0", "verdicts"):
        with pytest.raises(CompareFailError, match="verdict \\| missing \\| decided"):
            parse_rule(typo)


def test_a_verdict_change_outside_the_stored_interval_is_a_drift():
    diff = compare(_report("holds", 0.3, 0.2, 0.4), _report("inconclusive", 0.07, 0.04, 0.11))
    assert diff.failed and "FAIL" in diff.table()
    assert compare(_report("holds", 0.3, 0.2, 0.4), _report("fails", 0.02, 0.0, 0.04)).failed  # holds <-> fails
    d = decide(_result("inconclusive"), baseline=BaselineCheck("b.json", "holds", True, "table"))
    assert d.outcome == Outcome.FAIL and "drifted" in d.reason


def test_effect_moves_can_be_gated_in_units_of_the_intervals():
    base, near, far = _report("holds", 0.3, 0.2, 0.4), _report("holds", 0.33, 0.23, 0.43), \
        _report("holds", 0.6, 0.5, 0.7)
    assert not compare(base, near, ["effect:ci>2"]).failed
    assert compare(base, far, ["effect:ci>2"]).failed
    from resstream_assert.errors import CompareFailError
    from resstream_assert.gate.rules import parse_rule

    with pytest.raises(CompareFailError, match="only the effect has an interval"):
        parse_rule("rho:ci>2")


# --- stability: stable only when the flip rate's upper bound is below 10% -------------------------

@pytest.mark.parametrize("runs, flips, stable", [(20, 0, False), (36, 0, True), (36, 1, False)])
def test_a_stable_verdict_needs_its_upper_bound_below_ten_percent(monkeypatch, runs, flips, stable):
    import resstream_assert.claims.verdict_stability as vs

    calls = {"n": 0}

    def fake(rmap, sub, ids, **kw):
        calls["n"] += 1
        flip = calls["n"] <= flips
        return {cid: _result("fails" if flip else "holds") for cid in ids}

    class R:
        n_images = 200

        def subset(self, rows):
            return self

    monkeypatch.setattr(vs, "evaluate_responses", fake)
    table = vs.verdict_stability(None, {"id": R()}, {"C3": _result("holds")}, runs=runs)["C3"]
    assert table["flips"] == flips and bool(table["stable"]) is stable
    assert math.isclose(table["ci_high"], 1 - 0.025 ** (1 / runs)) if flips == 0 else True
    if runs == 20:
        assert table["ci_high"] > 0.16  # 0 flips in 20: the rate may still be 17%


def test_half_channels_slices_every_per_channel_quantity():
    from resstream_assert.claims.verdict_stability import half_channels
    from resstream_assert.measures.block import BlockMeasures

    c = 10
    arr = np.arange(c, dtype=float)
    bm = BlockMeasures("b", 1, c, {"O(X_I)": arr}, arr, arr, arr, arr, arr, None, "bn", arr, arr, arr, arr,
                       {"sm_b": arr, "curve": np.ones((c, 4))}, {})
    half = half_channels(bm, np.random.default_rng(0))
    assert half.channels == 5 and half.m_p1.shape == (5,) and half.scale["curve"].shape == (5, 4)
    assert np.array_equal(half.m_p1, half.responses_to_exemplars["O(X_I)"])  # the same channels everywhere
