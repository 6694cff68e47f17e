"""One test per model x claim. A gated claim that fails fails its test with the per-block table
(with ``--resstream-survey`` it is xfailed instead); ``inconclusive`` and ``not_applicable`` skip
with the reason; report-only claims always pass. Every result is recorded for the reports."""

from __future__ import annotations

import pytest

from resstream_assert.claims import REGISTRY, claim_order
from resstream_assert.results import ClaimAssertionError, Verdict


@pytest.mark.parametrize("claim", claim_order(REGISTRY))
def test_claim(claim, resstream_ref, resstream_workbench, resstream_record, resstream_selected_claims,
               resstream_config):
    result = resstream_workbench.claim_results(resstream_ref.spec, resstream_ref.backend,
                                               resstream_selected_claims)[claim]
    resstream_record(result)
    if result.verdict in (Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE):
        pytest.skip(f"{claim} {result.verdict.value}: {result.reason}")
    if result.verdict == Verdict.FAILS and result.gate:
        if resstream_config.survey:
            pytest.xfail(f"{claim} fails on this model (survey mode): {result.reason}")
        raise ClaimAssertionError(result, Verdict.HOLDS)
