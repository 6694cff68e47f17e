"""The gate: what a claim's verdict means for a test run. One rule, one home.

``decide(result, survey=..., baseline=...)`` maps a :class:`~resstream_assert.results.ClaimResult`
to an outcome of the claim's test.

Without a baseline, the verdict is the gate:

===================  ===================================================================
verdict              outcome
===================  ===================================================================
holds                pass
fails, gated         fail (``xfail`` in survey mode: reported, not failed)
inconclusive, gated  undecided: a failure of its own, with what would decide it
                     (``xfail`` in survey mode)
fails / inconclusive pass / skip for report-only claims (they never fail a run)
not_applicable       skip, with the reason
===================  ===================================================================

With a baseline (``--resstream-baseline``), the baseline is the gate, as in
pytest-regressions: what matters is whether the model changed, not whether the papers'
claims hold on it. The report plugin compares the result with the baseline
(:mod:`.baseline`, with its noise model) and passes what it found as a :class:`BaselineCheck`:

============================================================  ==============================
baseline comparison                                            outcome
============================================================  ==============================
a verdict change beyond noise, or a quantity past a tolerance  fail (also in survey mode)
a verdict change within noise (the intervals overlap)          xfail: unstable, not a drift
the same verdict: holds                                        pass
the same verdict: fails or inconclusive                        xfail (as in the baseline)
claim not in the baseline                                      as without a baseline
============================================================  ==============================

While the baseline is being written (``--resstream-update-baseline``) a gated claim that
fails or is undecided is an xfail: it is recorded so, and the next run holds it to that.
Report-only claims never fail a run, baseline or not (their drifts are shown as ``warn``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from resstream_assert.results import ClaimResult, Verdict

__all__ = ["Outcome", "Decision", "BaselineCheck", "decide", "DECIDED", "undecided"]

#: The verdicts that decide a gated claim. A run whose every model has none of these among its gated
#: claims checked nothing (:func:`undecided`).
DECIDED = (Verdict.HOLDS.value, Verdict.FAILS.value)


class Outcome(str, enum.Enum):
    """What happens to the test that checked a claim."""

    PASS = "pass"
    FAIL = "fail"
    UNDECIDED = "undecided"  # a gated claim the data could not decide: the test fails, saying so
    XFAIL = "xfail"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """An outcome and the line that explains it (shown by pytest for skip, xfail and fail).

    ``by_baseline`` is True when the outcome comes from the baseline comparison (the reason
    then holds the diff), False when it comes from the verdict alone.
    """

    outcome: Outcome
    reason: str
    by_baseline: bool = False

    def __bool__(self) -> bool:
        raise TypeError("a gate Decision has no truth value; compare decision.outcome with Outcome.PASS, ...")


@dataclass(frozen=True)
class BaselineCheck:
    """What the baseline says about one claim result (data only: the report plugin compares, the gate decides).

    ``verdict`` is the claim's verdict in the baseline (None: the claim is not in it);
    ``drifted`` is True when a compared quantity or a verdict changed past its tolerance (a verdict:
    beyond noise); ``unstable`` is True when a verdict changed within noise (not a drift);
    ``diff`` is the comparison table for the message; ``updating`` is True while the baseline
    is being written (then nothing is compared).

    Example:
        >>> BaselineCheck("baselines/r18.json", verdict="fails").drifted
        False
    """

    path: str
    verdict: str | None = None
    drifted: bool = False
    diff: str = ""
    updating: bool = False
    unstable: bool = False


def decide(result: ClaimResult, *, survey: bool = False, baseline: BaselineCheck | None = None) -> Decision:
    """The outcome of a claim's test, from its verdict, whether the claim gates, and the baseline (tables above).

    Example:
        >>> from resstream_assert.results import ClaimResult
        >>> decide(ClaimResult.from_dict(stored), baseline=BaselineCheck("b.json", verdict="fails")).outcome  # doctest: +SKIP
        <Outcome.XFAIL: 'xfail'>
    """
    claim, verdict = result.claim, result.verdict
    gated_failure = verdict == Verdict.FAILS and result.gate
    gated_undecided = verdict == Verdict.INCONCLUSIVE and result.gate
    if baseline is not None and baseline.updating:
        if gated_failure or gated_undecided:
            return Decision(Outcome.XFAIL, f"{claim} {_word(verdict)} on this model; recorded so in the new baseline "
                                           f"{baseline.path}: {result.reason}", True)
    elif baseline is not None and baseline.verdict is not None and result.gate:
        changed = baseline.verdict != verdict.value
        if baseline.drifted:
            what = f"verdict {baseline.verdict} -> {verdict.value}" if changed else "a quantity past its tolerance"
            return Decision(Outcome.FAIL, f"BaselineDriftError: residual-stream statistics drifted from the baseline "
                                          f"{baseline.path} ({claim}: {what})\n{baseline.diff}".rstrip(), True)
        if changed and {baseline.verdict, verdict.value} == {"holds", "fails"}:  # never within noise
            return Decision(Outcome.FAIL, f"BaselineDriftError: {claim} verdict {baseline.verdict} -> {verdict.value} "
                                          f"(baseline {baseline.path})\n{baseline.diff}".rstrip(), True)
        if changed:
            return Decision(Outcome.XFAIL, f"{claim} unstable: verdict {baseline.verdict} -> {verdict.value} with "
                                           f"overlapping intervals, within noise (not a drift from {baseline.path}): "
                                           f"{result.reason}\n{baseline.diff}".rstrip(), True)
        if gated_failure or gated_undecided:
            return Decision(Outcome.XFAIL, f"{claim} {_word(verdict)}, as in the baseline {baseline.path} (the model "
                                           f"did not change): {result.reason}", True)
    suffix = " (not in the baseline)" if baseline is not None and baseline.verdict is None and \
        not baseline.updating else ""
    if verdict == Verdict.NOT_APPLICABLE or (verdict == Verdict.INCONCLUSIVE and not result.gate):
        return Decision(Outcome.SKIP, f"{claim} {verdict.value}{suffix}: {result.reason}")
    if gated_undecided:
        if survey:
            return Decision(Outcome.XFAIL, f"{claim} undecided on this model (survey mode){suffix}: {result.reason}")
        return Decision(Outcome.UNDECIDED, f"{claim} undecided{suffix}: the data cannot tell whether it holds: "
                                           f"{result.reason}")
    if gated_failure:
        if survey:
            return Decision(Outcome.XFAIL, f"{claim} fails on this model (survey mode){suffix}: {result.reason}")
        return Decision(Outcome.FAIL, f"{claim} fails{suffix}: {result.reason}")
    return Decision(Outcome.PASS, f"{claim} {verdict.value}{suffix}: {result.reason}")


def _word(verdict: Verdict) -> str:
    return "undecided" if verdict == Verdict.INCONCLUSIVE else verdict.value


def undecided(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why a run decided nothing: one line per (model, backend) whose gated claims none hold or fail, or one
    line when no claim result was recorded at all; ``[]`` when every model had a decided gated claim.

    The one place that says whether a run checked anything (the report plugin fails such a run, or
    in survey mode ends it with a loud line). ``results`` are report dicts (``ClaimResult.to_dict()``).

    Example:
        >>> undecided([{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"}])
        []
        >>> undecided([{"model": "m", "backend": "torch", "claim": "C1", "verdict": "inconclusive",
        ...             "reason": "5 probe images < 32 (min_images)"}])
        ['m[torch]: 0 of 1 gated claims decided (C1 inconclusive: 5 probe images < 32 (min_images))']
    """
    results = list(results)
    if not results:
        return ["no claim result was recorded (every claim test was deselected, skipped before it ran, or errored)"]
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        backend = str(r.get("backend", "")) + ("" if r.get("stimuli", "exemplars") == "exemplars"
                                               else f"+{r.get('stimuli')}")
        by_model.setdefault(f"{r.get('model', '?')}[{backend}]", []).append(r)
    out = []
    for model, rs in by_model.items():
        gated = [r for r in rs if r.get("gate", True)]
        if any(str(r.get("verdict")) in DECIDED for r in gated):
            continue
        why = "; ".join(dict.fromkeys(f"{r.get('claim')} {r.get('verdict')}: {str(r.get('reason', '')).strip()}"
                                      for r in gated[:4]))
        more = f"; and {len(gated) - 4} more" if len(gated) > 4 else ""
        out.append(f"{model}: 0 of {len(gated)} gated claims decided" + (f" ({why}{more})" if gated else
                                                                         " (only report-only claims ran)"))
    return out
