"""The gate: what a claim's verdict means for a test run. One rule, one home.

``decide(result, survey=...)`` maps a :class:`~resstream_assert.results.ClaimResult` to an
outcome of the claim's test:

=================  ===========================================================
verdict            outcome
=================  ===========================================================
holds              pass
fails, gated       fail (``xfail`` in survey mode: reported, not failed)
fails, report-only pass (report-only claims never fail a run)
inconclusive       skip, with the reason
not_applicable     skip, with the reason
=================  ===========================================================

A baseline drift (:mod:`resstream_assert.report.baseline`) fails the test whatever this says;
the report plugin applies it after the test ran.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from resstream_assert.results import ClaimResult, Verdict

__all__ = ["Outcome", "Decision", "decide"]


class Outcome(str, enum.Enum):
    """What happens to the test that checked a claim."""

    PASS = "pass"
    FAIL = "fail"
    XFAIL = "xfail"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """An outcome and the line that explains it (shown by pytest for skip and xfail)."""

    outcome: Outcome
    reason: str

    def __bool__(self) -> bool:
        raise TypeError("a gate Decision has no truth value; compare decision.outcome with Outcome.PASS, ...")


def decide(result: ClaimResult, *, survey: bool = False) -> Decision:
    """The outcome of a claim's test, from its verdict and whether the claim gates (see the table above).

    Example:
        >>> from resstream_assert.results import ClaimResult
        >>> decide(ClaimResult.from_dict(stored), survey=True).outcome  # doctest: +SKIP
        <Outcome.XFAIL: 'xfail'>
    """
    claim = result.claim
    if result.verdict in (Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE):
        return Decision(Outcome.SKIP, f"{claim} {result.verdict.value}: {result.reason}")
    if result.verdict == Verdict.FAILS and result.gate:
        if survey:
            return Decision(Outcome.XFAIL, f"{claim} fails on this model (survey mode): {result.reason}")
        return Decision(Outcome.FAIL, f"{claim} fails: {result.reason}")
    return Decision(Outcome.PASS, f"{claim} {result.verdict.value}: {result.reason}")
