"""Exemplar vs featviz agreement (W4), collected only with ``--resstream-stimuli both``: per block,
Cohen's kappa of the skip / mix / overwrite categories under the two sources. Report-only:
the result goes to the reports (with the verdicts side by side); a drift from a baseline
still fails like any other recorded result."""

from __future__ import annotations

import pytest

from resstream_assert.gate import Outcome, decide


def test_stimulus_agreement(resstream_agreement_ref, resstream_pipeline, resstream_record, resstream_config):
    result = resstream_pipeline.agreement(resstream_agreement_ref.spec, resstream_agreement_ref.backend)
    resstream_record(result)
    decision = decide(result, survey=resstream_config.survey)
    if decision.outcome is Outcome.SKIP:
        pytest.skip(decision.reason)
