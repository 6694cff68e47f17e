"""The per-block -> claim summary: the one verdict rule every claim ends with (:func:`summarize`).

Each analysed block gets a test, p-values are Holm-adjusted across blocks, and a block holds,
fails (evidence against) or is inconclusive by where its effect's interval lies against the
claim's :class:`~.decision.Boundary` (:mod:`.decision`); the claim holds when ``ceil(mostly x A)``
of its ``A`` analysed blocks hold. The claim's effect is a random-effects (DerSimonian-Laird)
combination of the block effects with its 95% interval (:mod:`resstream_assert.stats.pooling`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from resstream_assert.claims.block_rows import row
from resstream_assert.claims.context import ClaimContext
from resstream_assert.claims.decision import Boundary, Tally, block_verdict, over_blocks
from resstream_assert.results import BlockRow, ClaimResult, Verdict
from resstream_assert.stats import holm
from resstream_assert.stats.pooling import Pooled, random_effects, se_from_ci


def _decide_blocks(rows: list[BlockRow], bound: Boundary | None, alpha: float,
                   direction: int) -> tuple[list[int], np.ndarray, list[BlockRow]]:
    """Holm-adjust the testable rows and decide each one's verdict: ``(tested indices, adjusted p's, rows)``.

    Rows already ``inconclusive`` or ``not_applicable`` (untestable) are kept as they are. Without a
    boundary (C11's reference check) a block holds when its adjusted p is below alpha and its effect
    points the claim's way.

    Example:
        >>> r = row("b", verdict=Verdict.HOLDS)
        >>> tested, adjusted, out = _decide_blocks([replace(r, p_value=0.01, effect=0.5)], None, 0.05, 1)
        >>> tested, out[0].verdict.value
        ([0], 'holds')
    """
    tested = [i for i, r in enumerate(rows) if r.verdict not in (Verdict.INCONCLUSIVE, Verdict.NOT_APPLICABLE)]
    adjusted = holm([rows[i].p_value for i in tested]) if tested else np.array([])
    alpha_block = alpha / max(1, len(tested))
    new_rows = list(rows)
    for i, p_adj in zip(tested, adjusted):
        r = rows[i]
        extra: dict[str, float]
        if bound is None:
            verdict, extra = (Verdict.HOLDS if p_adj < alpha and direction * r.effect > 0 else Verdict.FAILS), {}
        else:
            verdict, extra = block_verdict(r, bound, alpha=alpha, p_adjusted=float(p_adj), alpha_block=alpha_block)
        new_rows[i] = replace(r, p_adjusted=float(p_adj), verdict=verdict, values={**r.values, **extra})
    return tested, adjusted, new_rows


def _untested(rows: list[BlockRow], reason: str, base: dict[str, Any]) -> ClaimResult:
    """The claim result when no block could be tested: not applicable when no block applies, else inconclusive.

    Example:
        >>> base = dict(claim="C1", title="t", source="s", rows=(), seed=0)
        >>> _untested([row("b", note="3 defined channels < 10")], "", base).reason
        '1 block(s): 3 defined channels < 10'
    """
    verdict = Verdict.NOT_APPLICABLE if rows and all(r.verdict == Verdict.NOT_APPLICABLE for r in rows) \
        else Verdict.INCONCLUSIVE
    notes = sorted({r.note for r in rows if r.note})
    why = reason or (f"{len(rows)} block(s): " + "; ".join(notes[:3]) if notes else "no block testable")
    return ClaimResult(verdict=verdict, statistic=math.nan, p_value=math.nan, p_adjusted=math.nan,
                       effect=math.nan, ci_low=math.nan, ci_high=math.nan, n=0, reason=why, **base)


def _pooled_effect(tested_rows: Sequence[BlockRow], bound: Boundary | None) -> tuple[float, float, float, Pooled]:
    """The claim's effect and 95% interval from its tested blocks (clipped to the boundary's limits), and the pool.

    Example:
        >>> r = replace(row("b", verdict=Verdict.HOLDS), effect=0.3, ci_low=0.1, ci_high=0.5)
        >>> _pooled_effect([r], None)[:3]
        (0.3, 0.1, 0.5)
    """
    pooled = random_effects([r.effect for r in tested_rows],
                            se_from_ci([r.ci_low for r in tested_rows], [r.ci_high for r in tested_rows]) ** 2)
    if pooled.k == 0:  # no block has an interval (e.g. no bootstrap): the median block effect, no interval
        effect, lo, hi = float(np.median([r.effect for r in tested_rows])), math.nan, math.nan
    elif len(tested_rows) == 1:  # one block: its own effect and (possibly asymmetric) interval
        effect, lo, hi = tested_rows[0].effect, tested_rows[0].ci_low, tested_rows[0].ci_high
    else:
        effect, lo, hi = pooled.effect, pooled.ci_low, pooled.ci_high
    if bound is not None:
        lo, hi = bound.clip(lo), bound.clip(hi)
    return effect, lo, hi, pooled


def summarize(ctx: ClaimContext, rows: list[BlockRow], *, direction: int = 1,
              method: str = "", values: Mapping | None = None, figures: Mapping | None = None,
              reason: str = "", thresholds: Mapping | None = None) -> ClaimResult:
    """Holm-adjust the block rows, decide each block's verdict and the claim's (:mod:`.decision`).

    ``rows`` come in with raw ``p_value``, ``effect`` and its 95% interval; rows whose verdict is
    already ``inconclusive`` or ``not_applicable`` (untestable) are kept but excluded from the
    adjustment. A claim without a boundary (C11's reference check) keeps the plain rule: a block
    holds when its adjusted p is below alpha and its effect points the claim's way.

    Example:
        >>> result = summarize(ctx, rows, direction=-1)  # doctest: +SKIP
    """
    spec, opts = ctx.claim, ctx.options
    bound = ctx.boundary()
    direction = bound.direction if bound is not None else direction  # a claim's boundary says which way it points
    mostly = opts.mostly if opts.mostly is not None else spec.mostly
    tested, adjusted, new_rows = _decide_blocks(rows, bound, opts.alpha, direction)
    tally = over_blocks([r.verdict for r in new_rows], mostly)
    th = {"alpha": opts.alpha, "mostly": mostly, **(thresholds or {})}
    if bound is not None:
        th.update(delta=bound.delta, direction=bound.direction)
    base: dict[str, Any] = dict(
        claim=spec.id, title=spec.title, source=spec.source, rows=tuple(new_rows), seed=ctx.seed, model=ctx.model,
        backend=ctx.backend, method=method or spec.test, thresholds=th, values=dict(values or {}), gate=spec.gate,
        figures=dict(figures or {}))
    if not tested:
        return _untested(rows, reason, base)
    tested_rows = [new_rows[i] for i in tested]
    effect, lo, hi, pooled = _pooled_effect(tested_rows, bound)
    base["values"].update(blocks_hold=tally.holds, blocks_fail=tally.fails, blocks_undecided=tally.inconclusive,
                          blocks_analysed=tally.analysed, blocks_needed=tally.need, tau2=pooled.tau2,
                          p_heterogeneity=pooled.p_heterogeneity, blocks_pooled=pooled.k)
    verdict = tally.verdict if bound is not None else (Verdict.HOLDS if tally.holds >= tally.need else Verdict.FAILS)
    p_sorted = np.sort(adjusted)
    p_claim = float(p_sorted[tally.need - 1]) if tally.need <= len(p_sorted) else math.nan
    summary = reason or _summary_text(tally, effect, lo, hi, bound, new_rows, verdict)
    return ClaimResult(verdict=verdict, statistic=tally.holds / max(1, tally.analysed),
                       p_value=float(np.min([rows[i].p_value for i in tested])), p_adjusted=p_claim, effect=effect,
                       ci_low=lo, ci_high=hi, n=int(sum(r.n for r in tested_rows)), reason=summary, **base)


def _summary_text(tally: Tally, effect: float, lo: float, hi: float, bound: Boundary | None, rows: Sequence[BlockRow],
                  verdict: Verdict) -> str:
    """One line: the block tally, the pooled effect, and for an undecided claim what would decide it."""
    ci = f" [{lo:+.3g}, {hi:+.3g}]" if math.isfinite(lo) else ""
    text = f"{tally.text()}; pooled effect {effect:+.3g}{ci}"
    if bound is None:
        return text
    text += f", boundary {bound.short()}"
    if verdict == Verdict.INCONCLUSIVE:
        undecided = [r for r in rows if r.verdict == Verdict.INCONCLUSIVE and "mde" in r.values]
        mdes = [r.values["mde"] for r in undecided if math.isfinite(r.values["mde"])]
        ns = [r.values["n_to_decide"] for r in undecided if math.isfinite(r.values["n_to_decide"])]
        if mdes:
            worst = max(mdes) if bound.direction > 0 else min(mdes)
            text += f"; undecided: the smallest effect these blocks detect (80% power) is up to {worst:+.3g}"
        if ns:
            text += f"; about {int(max(ns)):,} {bound.replication} per block would decide them"
    return text


def inconclusive(ctx: ClaimContext, reason: str) -> ClaimResult:
    """A claim result that could not be decided, with the reason (e.g. too few probe images)."""
    return summarize(ctx, [row("all blocks", note=reason)], reason=reason)


def not_run(ctx: ClaimContext, verdict: Verdict, reason: str, block: str = "model") -> ClaimResult:
    """A claim result whose test was not run at all (not applicable or inconclusive), with the reason."""
    return summarize(ctx, [row(block, verdict=verdict, note=reason)], reason=reason)
