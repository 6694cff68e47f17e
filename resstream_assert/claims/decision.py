"""The verdict rule: where a block's interval lies against the claim's boundary, and the claim over blocks.

Each gated claim states its **boundary** δ in its own units: the smallest effect that still
counts as the property (:class:`Boundary`). A block, after Holm's adjustment across blocks:

==================================================================  ===============================
the block's effect, its 95% interval and adjusted p                   verdict
==================================================================  ===============================
p_adj < alpha and the whole interval on the claim's side of δ         holds
the whole interval on the other side of δ                             fails (evidence against)
otherwise (the interval crosses δ, or no interval)                    inconclusive
==================================================================  ===============================

An inconclusive block carries ``mde``, the smallest true effect that would make it hold with
80% power at this block's precision, and ``n_to_decide``, about how many units (channels,
images: the claim's unit of replication) would make an interval of the same spread clear δ
on the side its estimate lies (the precision of an estimate grows as the square root of n).

Over blocks, with ``A`` analysed blocks (not-applicable ones left out, untestable ones kept as
inconclusive) and ``need = ceil(mostly x A)``: the claim **holds** when at least ``need``
blocks hold, **fails** when more than ``A - need`` blocks fail (it can no longer reach
``need``), and is **inconclusive** otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as st

from resstream_assert.results import BlockRow, Verdict

__all__ = ["Boundary", "block_verdict", "over_blocks", "Tally"]

_Z80 = float(st.norm.ppf(0.80))
_Z975 = float(st.norm.ppf(0.975))


@dataclass(frozen=True)
class Boundary:
    """A claim's boundary: ``delta`` in the claim's ``unit``, on the side ``direction`` (+1: the
    claim needs effects above δ; -1: below), estimated over units of ``replication``.

    Example:
        >>> Boundary(-0.1, -1, "Spearman rho", "channels").beyond(-0.3)
        True
    """

    delta: float
    direction: int
    unit: str
    replication: str = "channels"
    # The effect's possible range (a share, a correlation): the pooled interval is clipped to it, since a
    # random-effects interval of blocks near a limit can reach past it (a net share of +1.02 means nothing).
    limits: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"Boundary.direction must be +1 or -1, got {self.direction}")

    def clip(self, value: float) -> float:
        """``value`` within :attr:`limits` (NaN stays NaN).

        Example:
            >>> Boundary(0.5, 1, "net share", limits=(-1.0, 1.0)).clip(1.021)
            1.0
        """
        return value if math.isnan(value) else min(max(value, self.limits[0]), self.limits[1])

    def beyond(self, value: float) -> bool:
        """True when ``value`` lies strictly on the claim's side of δ."""
        return self.direction * (value - self.delta) > 0

    def short(self) -> str:
        """``'> 0.05 (share)'`` / ``'< -0.1 (Spearman rho)'``: the boundary for tables and messages."""
        return f"{'>' if self.direction > 0 else '<'} {self.delta:g} ({self.unit})"


def _mde(row: BlockRow, b: Boundary, alpha_block: float) -> float:
    """The true effect at which this block would hold with 80% power: δ plus (z_{1-a} + z_0.8) standard
    errors, with the standard error read off the block's 95% interval."""
    se = (row.ci_high - row.ci_low) / (2 * _Z975)
    if not (math.isfinite(se) and se > 0):
        return math.nan
    z = float(st.norm.isf(min(0.5, alpha_block)))
    return b.delta + b.direction * (z + _Z80) * se


def _n_to_decide(row: BlockRow, b: Boundary) -> float:
    """About how many units would give an interval of this spread that clears δ where the estimate lies."""
    half = (row.ci_high - row.ci_low) / 2
    gap = abs(row.effect - b.delta)
    if not (math.isfinite(half) and math.isfinite(gap) and row.n > 0):
        return math.nan
    if gap == 0:
        return math.inf
    return math.ceil(row.n * (half / gap) ** 2)


def block_verdict(row: BlockRow, b: Boundary, *, alpha: float, p_adjusted: float, alpha_block: float
                  ) -> tuple[Verdict, dict[str, float]]:
    """The verdict of one tested block (the table above) and, when inconclusive, its ``mde`` and
    ``n_to_decide`` (``alpha_block``: the per-block level the power is computed at, alpha / blocks).

    Example:
        >>> from resstream_assert.results import BlockRow
        >>> r = BlockRow("b", "fails", 0, 0.01, 0.02, 7 / 64, 0.045, 0.212, 64)
        >>> block_verdict(r, Boundary(0.05, 1, "share"), alpha=0.05, p_adjusted=0.02, alpha_block=0.05)[0].value
        'inconclusive'
    """
    lo, hi = row.ci_low, row.ci_high
    if math.isfinite(lo) and math.isfinite(hi):
        near, far = (lo, hi) if b.direction > 0 else (hi, lo)
        if p_adjusted < alpha and b.beyond(near):
            return Verdict.HOLDS, {}
        if not b.beyond(far) and far != b.delta:
            return Verdict.FAILS, {}
    # (an mde past the effect's range, e.g. rho < -1, means no reachable effect would be detected: shown at the limit)
    return Verdict.INCONCLUSIVE, {"mde": b.clip(_mde(row, b, alpha_block)), "n_to_decide": _n_to_decide(row, b)}


@dataclass(frozen=True)
class Tally:
    """How the analysed blocks came out, and what the claim needs: ``need = ceil(mostly x analysed)``."""

    holds: int
    fails: int
    inconclusive: int
    analysed: int
    need: int

    @property
    def verdict(self) -> Verdict:
        """holds / fails / inconclusive over blocks (module docstring)."""
        if self.analysed == 0:
            return Verdict.NOT_APPLICABLE
        if self.holds >= self.need:
            return Verdict.HOLDS
        if self.fails > self.analysed - self.need:
            return Verdict.FAILS
        return Verdict.INCONCLUSIVE

    def text(self) -> str:
        """``'holds in 4 of 7 analysed blocks (needs 4; 1 fails, 2 undecided)'``."""
        return (f"holds in {self.holds} of {self.analysed} analysed blocks (needs {self.need}; "
                f"{self.fails} fail{'s' if self.fails == 1 else ''}, {self.inconclusive} undecided)")


def over_blocks(verdicts: Sequence[Verdict], mostly: float) -> Tally:
    """Tally block verdicts (not-applicable blocks left out of the analysed count).

    Example:
        >>> t = over_blocks([Verdict.HOLDS] + [Verdict.INCONCLUSIVE] * 6, mostly=0.5)
        >>> t.verdict.value, t.need
        ('inconclusive', 4)
    """
    counted = [v for v in verdicts if v != Verdict.NOT_APPLICABLE]
    analysed = len(counted)
    need = max(1, math.ceil(mostly * analysed)) if analysed else 0
    return Tally(counted.count(Verdict.HOLDS), counted.count(Verdict.FAILS),
                 counted.count(Verdict.INCONCLUSIVE), analysed, need)
