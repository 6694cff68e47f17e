"""The gate: one rule from a claim's verdict to its test's outcome (resstream_assert.gate)."""

from __future__ import annotations

import pytest

from resstream_assert.gate import BaselineCheck, Outcome, decide
from resstream_assert.results import ClaimResult, Verdict


def _result(verdict: Verdict, gate: bool = True) -> ClaimResult:
    return ClaimResult(claim="C3", title="t", source="P1", verdict=verdict, statistic=0.5, p_value=0.01,
                       p_adjusted=0.02, effect=-0.3, ci_low=-0.5, ci_high=-0.1, n=40, rows=(), seed=0, model="m",
                       backend="torch", method="m", reason="holds in 1/2 blocks", gate=gate)


@pytest.mark.parametrize("verdict, gate, survey, outcome", [
    (Verdict.HOLDS, True, False, Outcome.PASS),
    (Verdict.HOLDS, False, True, Outcome.PASS),
    (Verdict.FAILS, True, False, Outcome.FAIL),
    (Verdict.FAILS, True, True, Outcome.XFAIL),
    (Verdict.FAILS, False, False, Outcome.PASS),  # report-only claims never fail a run
    (Verdict.INCONCLUSIVE, True, False, Outcome.UNDECIDED),  # a gated claim the data cannot decide fails so
    (Verdict.INCONCLUSIVE, True, True, Outcome.XFAIL),
    (Verdict.INCONCLUSIVE, False, False, Outcome.SKIP),  # report-only: never fails
    (Verdict.NOT_APPLICABLE, True, True, Outcome.SKIP),
])
def test_every_verdict_has_one_outcome(verdict, gate, survey, outcome):
    decision = decide(_result(verdict, gate), survey=survey)
    assert decision.outcome is outcome
    assert "C3" in decision.reason and "holds in 1/2 blocks" in decision.reason


def test_a_decision_is_not_truthy():
    with pytest.raises(TypeError, match="truth value"):
        bool(decide(_result(Verdict.FAILS)))


# --- with a baseline, the baseline is the gate (pytest-regressions semantics) ----------------------------

@pytest.mark.parametrize("verdict, gate, check, survey, outcome", [
    # unchanged: a claim that failed in the baseline and fails now is an expected failure, not a failure
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict="fails"), False, Outcome.XFAIL),
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict="fails"), True, Outcome.XFAIL),
    (Verdict.HOLDS, True, BaselineCheck("b.json", verdict="holds"), False, Outcome.PASS),
    (Verdict.INCONCLUSIVE, True, BaselineCheck("b.json", verdict="inconclusive"), False, Outcome.XFAIL),
    # a verdict change beyond noise fails, whichever way it goes, and also in survey mode
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict="holds", drifted=True), True, Outcome.FAIL),
    (Verdict.HOLDS, True, BaselineCheck("b.json", verdict="fails", drifted=True), False, Outcome.FAIL),
    (Verdict.INCONCLUSIVE, True, BaselineCheck("b.json", verdict="holds", drifted=True), False, Outcome.FAIL),
    # holds <-> fails is never noise, even when the comparison did not flag it
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict="holds"), False, Outcome.FAIL),
    # a change within noise (the intervals overlap) is unstable: reported, not failed
    (Verdict.INCONCLUSIVE, True, BaselineCheck("b.json", verdict="holds", unstable=True), False, Outcome.XFAIL),
    (Verdict.HOLDS, True, BaselineCheck("b.json", verdict="inconclusive", unstable=True), True, Outcome.XFAIL),
    # same verdict, but a quantity drifted past its tolerance
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict="fails", drifted=True), False, Outcome.FAIL),
    (Verdict.HOLDS, True, BaselineCheck("b.json", verdict="holds", drifted=True), False, Outcome.FAIL),
    # report-only claims never fail a run; a claim not in the baseline is gated by its verdict
    (Verdict.FAILS, False, BaselineCheck("b.json", verdict="holds", drifted=True), False, Outcome.PASS),
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict=None), False, Outcome.FAIL),
    (Verdict.FAILS, True, BaselineCheck("b.json", verdict=None), True, Outcome.XFAIL),
    # writing the baseline: a failing claim is recorded as failing (xfail), the run stays green
    (Verdict.FAILS, True, BaselineCheck("b.json", updating=True), False, Outcome.XFAIL),
    (Verdict.INCONCLUSIVE, True, BaselineCheck("b.json", updating=True), False, Outcome.XFAIL),
    (Verdict.HOLDS, True, BaselineCheck("b.json", updating=True), False, Outcome.PASS),
])
def test_with_a_baseline_the_baseline_is_the_gate(verdict, gate, check, survey, outcome):
    decision = decide(_result(verdict, gate), survey=survey, baseline=check)
    assert decision.outcome is outcome, decision.reason
    assert "C3" in decision.reason


def test_baseline_reasons_say_what_happened():
    xfail = decide(_result(Verdict.FAILS), baseline=BaselineCheck("baselines/r18.json", verdict="fails"))
    assert xfail.by_baseline and "fails, as in the baseline baselines/r18.json" in xfail.reason
    drift = decide(_result(Verdict.HOLDS), baseline=BaselineCheck("b.json", verdict="fails", drifted=True,
                                                                   diff="C3 (claim) verdict fails holds FAIL"))
    assert drift.by_baseline and drift.reason.startswith("BaselineDriftError")
    assert "verdict fails -> holds" in drift.reason and "C3 (claim) verdict" in drift.reason
    new = decide(_result(Verdict.FAILS), baseline=BaselineCheck("b.json"))
    assert not new.by_baseline and "(not in the baseline)" in new.reason
