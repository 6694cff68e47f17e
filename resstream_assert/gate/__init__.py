"""The gate: what a claim's verdict means for a test run, with or without a stored baseline.

``outcome`` maps a verdict (and what the baseline says of it) to pass / fail / xfail / skip;
``baseline`` compares a run's results with a stored report; ``rules`` is the grammar of the
tolerances a user sets (``--resstream-compare-fail rho:abs>0.1``). Numpy and the stdlib only.
"""

from __future__ import annotations

from resstream_assert.gate.outcome import BaselineCheck, Decision, Outcome, decide, undecided

__all__ = ["BaselineCheck", "Decision", "Outcome", "decide", "undecided"]
