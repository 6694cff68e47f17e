"""One test per model x claim. What a verdict does to the test is :func:`resstream_assert.gate.decide`:
a gated claim that fails, or that the data cannot decide (inconclusive: "undecided"), fails its test
with the per-block table (with ``--resstream-survey`` it is xfailed instead); ``not_applicable``
skips with the reason; report-only claims never fail. With ``--resstream-baseline`` the baseline is
the gate: the same verdict as in the baseline does not fail, a verdict change within noise is
xfailed as unstable, a change beyond noise or a drift fails. Every result is recorded for the
reports. Opt-in claims (X3, X4) skip unless selected with ``--resstream-claims``."""

from __future__ import annotations

import pytest

from resstream_assert.claims import REGISTRY, claim_order
from resstream_assert.gate import Outcome
from resstream_assert.results import Verdict
from resstream_assert.errors import ClaimAssertionError


@pytest.mark.parametrize("claim", claim_order(REGISTRY))
def test_claim(claim, resstream_ref, resstream_pipeline, resstream_record, resstream_decide, resstream_config):
    if resstream_config.claims is None and REGISTRY[claim].opt_in:
        pytest.skip(f"{claim} is opt-in (it runs the model many times: minutes on a CPU); select it with "
                    f"--resstream-claims {claim} (with the claims you want beside it)")
    result = resstream_pipeline.claim_results(resstream_ref.spec, resstream_ref.backend,
                                              stimuli=resstream_ref.stimuli)[claim]
    resstream_record(result)
    decision = resstream_decide(result)  # gate.decide: the verdict, or with --resstream-baseline the baseline
    if decision.outcome is Outcome.SKIP:
        pytest.skip(decision.reason)
    if decision.outcome is Outcome.XFAIL:
        pytest.xfail(decision.reason)
    if decision.outcome in (Outcome.FAIL, Outcome.UNDECIDED):  # the message alone: the suite's source and
        # fixtures are not the answer
        pytest.fail(decision.reason if decision.by_baseline else str(ClaimAssertionError(result, Verdict.HOLDS)),
                    pytrace=False)
