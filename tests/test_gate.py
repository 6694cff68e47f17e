"""The gate: one rule from a claim's verdict to its test's outcome (resstream_assert.gate)."""

from __future__ import annotations

import pytest

from resstream_assert.gate import Outcome, decide
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
    (Verdict.INCONCLUSIVE, True, False, Outcome.SKIP),
    (Verdict.NOT_APPLICABLE, True, True, Outcome.SKIP),
])
def test_every_verdict_has_one_outcome(verdict, gate, survey, outcome):
    decision = decide(_result(verdict, gate), survey=survey)
    assert decision.outcome is outcome
    assert "C3" in decision.reason and "holds in 1/2 blocks" in decision.reason


def test_a_decision_is_not_truthy():
    with pytest.raises(TypeError, match="truth value"):
        bool(decide(_result(Verdict.FAILS)))
