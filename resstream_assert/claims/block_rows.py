"""Block rows: :func:`row` is the one way a claim writes a :class:`~resstream_assert.results.BlockRow`,
from a stats test or as an inconclusive / not-applicable row with its note.
"""

from __future__ import annotations

import math
from typing import Mapping

from resstream_assert.results import BlockRow, Verdict


def row(block: str, result=None, *, verdict: Verdict | None = None, note: str = "", n: int = 0,
        values: Mapping | None = None) -> BlockRow:
    """A block row from a stats ``TestResult`` (or an inconclusive / not-applicable row with a note).

    Example:
        >>> row("layer2.1", verdict=Verdict.INCONCLUSIVE, note="3 defined channels < 10").verdict.value
        'inconclusive'
    """
    if result is None:
        return BlockRow(block=block, verdict=verdict or Verdict.INCONCLUSIVE, statistic=math.nan, p_value=math.nan,
                        p_adjusted=math.nan, effect=math.nan, ci_low=math.nan, ci_high=math.nan, n=n, note=note,
                        values=dict(values or {}))
    return BlockRow(block=block, verdict=verdict or Verdict.FAILS, statistic=result.statistic, p_value=result.p_value,
                    p_adjusted=math.nan, effect=result.effect, ci_low=result.ci_low, ci_high=result.ci_high,
                    n=result.n, note=note, values={**dict(getattr(result, "values", {}) or {}), **dict(values or {})})
