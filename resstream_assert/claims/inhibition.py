"""C4: evidence for inhibition by the block is mixed (P1). Reported, never gated.

P1 compares the branch's response to the input's exemplars, ``B(X_I)``, between overwrite
(``M < 1``) and skip (``M >= 1``) channels. Done on one set of images this is circular:
``M = O(X_I) / O(X_B)`` and ``O(X_I)`` contains ``B(X_I)``, so a channel whose branch happens
to respond more on the input's exemplars reads as more skip-like, and the groups differ even
when input and branch are independent (p < 0.05 in 11% of null blocks at 64 channels, 19% at
256). Here the groups and the compared quantity come from **disjoint halves of the probe
images** (one seeded split for all blocks): ``M`` on half A, ``B(X_I)`` on the top-k exemplars
of the input within half B. With input and branch independent the two halves are independent,
so the groups are exchangeable with respect to the half-B quantity.

The compared quantity is ``B(X_I)`` standardized by the branch's own distribution over half B,
``z_c = (B_c(X_I) - mean_n B_c) / sd_n B_c`` (in branch-SD units): a real branch has a BN
offset and a scale that move with its place on the spectrum, which would shift raw ``B(X_I)``
between the groups without any inhibition. Per block: Welch's t that ``z`` is lower in
overwrite channels, the effect being the difference of group means (overwrite - skip, branch
SDs) with its 95% CI; Holm across blocks. The raw ``B(X_I)`` comparison (Mann-Whitney, as the
papers' quantity) and the positive-input tuning correlation (``rho(I_c, B_c | I_c > 0)`` on half
B) are row values.

"Mixed" is heterogeneity of the block effects, tested with Cochran's Q (chi-square on
``k - 1`` df, inverse-variance weights from the Welch SEs): the claim holds when the block
effects differ beyond sampling error (Q's p < alpha) **and** at least one block shows
inhibition after Holm; it fails when the effects are homogeneous (uniformly null or uniformly
inhibitory). The exemplars are always the probe's, also under ``--resstream-stimuli featviz``.
"""

from __future__ import annotations

import math

import numpy as np

from resstream_assert.claims.base import ClaimContext, register, row, split_halves, summarize
from resstream_assert.effects import DegenerateDataError
from resstream_assert.measures import MeasureOptions, block_measures
from resstream_assert.results import Verdict
from resstream_assert.stats import cochran_q, mann_whitney, welch_difference

#: Fewest channels per group (overwrite, skip) for a block's Welch test (its SE weighs Cochran's Q).
MIN_GROUP = 5


def _block_quantities(ctx: ClaimContext, bm, halves) -> dict[str, np.ndarray]:
    """M on half A; standardized and raw B(X_I) and the tuning rho on half B."""
    block = ctx.rmap[bm.index]
    resp = ctx.responses["id"]
    r_a, r_b = resp.subset(halves[0]), resp.subset(halves[1])
    m_a = block_measures(block, {"id": r_a}, MeasureOptions(seed=ctx.seed, tuning=False)).m_p1
    on_b = block_measures(block, {"id": r_b}, MeasureOptions(seed=ctx.seed))
    branch = r_b.get(block, "branch_out").astype(np.float64)
    sd = branch.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (on_b.b_at_xi - branch.mean(axis=0)) / sd, np.nan)
    return {"m": m_a, "z": z, "raw": on_b.b_at_xi, "rho": on_b.rho_tuning}


def _secondary(q: dict, over: np.ndarray, skip: np.ndarray, rng) -> dict[str, float]:
    values = {"median_raw_b_at_xi_overwrite": float(np.nanmedian(q["raw"][over])),
              "median_raw_b_at_xi_skip": float(np.nanmedian(q["raw"][skip]))}
    for name, key in (("raw", "raw"), ("tuning", "rho")):
        try:
            t = mann_whitney(q[key][over], q[key][skip], alternative="less", rng=rng, n_boot=0)
            values.update({f"p_{name}": t.p_value, f"effect_{name}": t.effect})
        except DegenerateDataError:
            values.update({f"p_{name}": math.nan, f"effect_{name}": math.nan})
    return values


@register("C4", "Evidence for inhibition by the block is mixed", "P1",
          "groups by M on half A of the probe images, the branch's standardized response to the input's exemplars "
          "on half B; per block one-sided Welch t (overwrite M<1 lower than skip M>=1, effect = mean difference in "
          "branch SDs), Holm; holds when Cochran's Q finds the block effects heterogeneous and >= 1 block inhibited",
          gate=False)
def inhibition(ctx: ClaimContext):
    """C4: is the branch's response to the input's feature lower in overwrite channels, unevenly over blocks?

    Example:
        >>> inhibition(ctx).values["p_heterogeneity"]  # doctest: +SKIP
    """
    halves = split_halves(ctx.responses["id"].n_images, ctx.rng(-1, "split"))
    rows = []
    for bm in ctx.analysed():
        q = _block_quantities(ctx, bm, halves)
        ok = np.isfinite(q["m"]) & np.isfinite(q["z"])
        over, skip = ok & (q["m"] < 1), ok & (q["m"] >= 1)
        counts = {"n_overwrite": int(over.sum()), "n_skip": int(skip.sum()), "n_images_m": len(halves[0]),
                  "n_images_b": len(halves[1])}
        if min(over.sum(), skip.sum()) < MIN_GROUP:
            rows.append(row(bm.block, n=int(over.sum() + skip.sum()), values=counts,
                            note=f"{int(over.sum())} overwrite / {int(skip.sum())} skip channels: < {MIN_GROUP} "
                                 "in a group"))
            continue
        try:
            test = welch_difference(q["z"][over], q["z"][skip], alternative="less")
        except DegenerateDataError as exc:
            rows.append(row(bm.block, verdict=Verdict.NOT_APPLICABLE, note=str(exc), values=counts))
            continue
        rows.append(row(bm.block, test, values={**counts, **_secondary(q, over, skip, ctx.rng(bm.index))}))
    result = summarize(ctx, rows, direction=-1)
    tested = [r for r in result.rows if r.verdict in (Verdict.HOLDS, Verdict.FAILS)]
    if not tested:
        return result
    n_inh = sum(r.verdict == Verdict.HOLDS for r in tested)
    try:
        q = cochran_q([r.effect for r in tested], [r.values["se"] for r in tested])
    except DegenerateDataError as exc:
        return result.with_(verdict=Verdict.INCONCLUSIVE, reason=f"heterogeneity not testable: {exc}",
                            values={**result.values, "n_significant": n_inh, "n_tests": len(tested)})
    mixed = q.p_value < ctx.options.alpha and n_inh > 0
    how = ("mixed: heterogeneous, and inhibition in some blocks" if mixed else
           "uniform: block effects homogeneous" if q.p_value >= ctx.options.alpha else
           "heterogeneous, but no block shows inhibition")
    return result.with_(
        verdict=Verdict.HOLDS if mixed else Verdict.FAILS, statistic=q.statistic,
        values={**result.values, "n_significant": n_inh, "n_tests": len(tested), "q": q.statistic,
                "p_heterogeneity": q.p_value, "i2": q.effect, "pooled_effect": q.values["pooled_effect"],
                "pooled_se": q.values["pooled_se"]},
        reason=f"Cochran's Q = {q.statistic:.3g} on {len(tested) - 1} df (p = {q.p_value:.3g}, I2 = {q.effect:.2f}); "
               f"{n_inh}/{len(tested)} blocks inhibited after Holm: {how}")
