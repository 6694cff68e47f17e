"""C1 and C2: the skip / overwrite / mix spectrum within blocks, and its variation between blocks (P1)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.stats import rankdata

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, register, row, summarize
from resstream_assert.errors import DegenerateDataError
from resstream_assert.measures import MIX, OVERWRITE, SKIP, UNDEFINED
from resstream_assert.results import Verdict
from resstream_assert.stats import binomial_proportion, chi2_independence_mc, spearman_permutation

P0 = 0.05  # each category must exceed 5% of a block's defined channels (spec C1)
HIST_EDGES = np.arange(0, 5.25, 0.25)  # the papers' bins: M clamped at 5, bins of 0.25


def _counts(cat: np.ndarray) -> dict[str, int]:
    return {"skip": int((cat == SKIP).sum()), "mix": int((cat == MIX).sum()),
            "overwrite": int((cat == OVERWRITE).sum()), "undefined": int((cat == UNDEFINED).sum())}


@register("C1", "Skip-overwrite-mix spectrum exists within blocks", "P1",
          "exact binomial (Clopper-Pearson) test that each of skip, mix and overwrite exceeds 5% of a block's "
          "defined channels; a block holds when all three do (intersection-union: p = max of the three)",
          boundary=Boundary(0.05, +1, "share of channels in the rarest of skip / mix / overwrite",
                            limits=(0.0, 1.0)))
def spectrum(ctx: ClaimContext):
    """C1: per block, every category is non-negligible (each proportion > 5%).

    Example:
        >>> spectrum(ctx).verdict  # doctest: +SKIP
    """
    rows, hists = [], []
    for bm in ctx.analysed():
        cat = bm.category("p1")
        c = _counts(cat)
        n = c["skip"] + c["mix"] + c["overwrite"]
        m = bm.mix_ratio("p1")
        coded = np.minimum(bm.mix_ratio("p1", coded=True), 5.0)
        hists.append({"label": bm.block, "edges": HIST_EDGES.tolist(),
                      "counts": np.histogram(coded[np.isfinite(coded)], HIST_EDGES)[0].tolist()})
        values = {f"frac_{k}": (v / n if n else math.nan) for k, v in c.items() if k != "undefined"}
        values["n_undefined"] = c["undefined"]
        finite = m[np.isfinite(m) & (m > 0)]
        values["log10_span"] = float(np.log10(finite.max() / finite.min())) if finite.size > 1 else math.nan
        few = ctx.too_few(bm, n, values=values)
        if few is not None:
            rows.append(few)
            continue
        tests = {k: binomial_proportion(c[k], n, p0=P0) for k in ("skip", "mix", "overwrite")}
        worst = min(tests, key=lambda k: c[k])
        values.update({f"p_{k}": t.p_value for k, t in tests.items()})
        values["rho_share"] = _share_agreement(bm, ctx)
        r = row(bm.block, tests[worst], values=values, note=f"smallest: {worst}")
        rows.append(replace(r, p_value=max(t.p_value for t in tests.values())))
    return summarize(ctx, rows, direction=1, thresholds={"p0": P0},
                     figures={"mix_ratio_hist": {"type": "hist", "title": "Mix ratio M per block (P1, clamped at 5)",
                                                 "xlabel": "M = O(X_I) / O(X_B)", "ylabel": "channels",
                                                 "panels": hists}})


def _share_agreement(bm, ctx: ClaimContext) -> float:
    """Stimulus-free sanity check (spec C1): Spearman of M with the input's contribution share."""
    m, share = bm.mix_ratio("p1"), bm.contribution_share
    ok = np.isfinite(share) & ~np.isnan(m)
    try:
        # Ranks, not values: M is inf for a silent branch, and Spearman only needs the order.
        return spearman_permutation(rankdata(m[ok]), share[ok], alternative="greater", rng=ctx.rng(bm.index),
                                    n_resamples=199, n_boot=0).effect
    except DegenerateDataError:
        return math.nan


@register("C2", "Category proportions differ between blocks (flexible feature manager)", "P1",
          "chi-square test of independence (blocks x categories) with a Monte-Carlo p-value; effect Cramer's V",
          mostly=1.0, gate=False,
          boundary=Boundary(0.10, +1, "Cramer's V of blocks x categories", limits=(0.0, 1.0)))
def heterogeneity(ctx: ClaimContext):
    """C2 (descriptive): skip/mix/overwrite proportions are not homogeneous across blocks.

    Example:
        >>> heterogeneity(ctx).values["cramers_v"]  # doctest: +SKIP
    """
    blocks = ctx.analysed()
    table = np.array([[(bm.category("p1") == k).sum() for k in (SKIP, MIX, OVERWRITE)] for bm in blocks])
    values = {f"{bm.block}:{name}": int(v) for bm, counts in zip(blocks, table)
              for name, v in zip(("skip", "mix", "overwrite"), counts)}
    try:
        test = chi2_independence_mc(table, rng=ctx.rng(), n_resamples=ctx.options.n_resamples,
                                    n_boot=ctx.options.n_boot)
        r = row("all blocks", test, values=values)
    except DegenerateDataError as exc:
        # A single non-empty category (NC-id, NC-plain) or a single block: homogeneous by construction
        # (V = 0 exactly: an interval of one point).
        r = row("all blocks", verdict=Verdict.NOT_APPLICABLE, note=str(exc), values=values, n=int(table.sum()))
        if len(blocks) > 1:  # no association at all: V = 0, p = 1
            r = replace(r, verdict=Verdict.FAILS, statistic=0.0, p_value=1.0, effect=0.0, ci_low=0.0, ci_high=0.0)
    return summarize(ctx, [r], direction=1)
