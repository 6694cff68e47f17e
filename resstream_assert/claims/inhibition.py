"""C4: evidence for inhibition by the block is mixed (P1). Reported, never gated."""

from __future__ import annotations

import numpy as np

from resstream_assert.claims.base import ClaimContext, register, row, summarize
from resstream_assert.errors import DegenerateDataError
from resstream_assert.results import Verdict
from resstream_assert.stats import mann_whitney


@register("C4", "Evidence for inhibition by the block is mixed", "P1",
          "one-sided Mann-Whitney (overwrite M<1 vs skip M>=1) of (a) the branch's response to the input's "
          "exemplars and (b) the positive-input tuning-curve Spearman rho; holds when significance is NOT uniform "
          "across blocks and tests", gate=False)
def inhibition(ctx: ClaimContext):
    """C4: (a) B_c(X_I) and (b) rho(I_c, B_c | I_c > 0) are lower in overwrite channels, inconsistently.

    The claim is that the evidence is mixed, so it holds when some but not all of the 2 x blocks
    tests are significant after Holm; uniformly significant or uniformly null results fail it.

    Example:
        >>> inhibition(ctx).values["n_significant"]  # doctest: +SKIP
    """
    rows, sig_b = [], []
    for bm in ctx.analysed():
        m = bm.mix_ratio("p1")
        over, skip = (m < 1) & ~np.isnan(m), (m >= 1) & ~np.isnan(m)
        if min(over.sum(), skip.sum()) < 3:
            rows.append(row(bm.block, note=f"{int(over.sum())} overwrite / {int(skip.sum())} skip channels: too few",
                            n=int(over.sum() + skip.sum())))
            continue
        rng = ctx.rng(bm.index)
        try:
            a = mann_whitney(bm.b_at_xi[over], bm.b_at_xi[skip], alternative="less", rng=rng, n_boot=ctx.options.n_boot)
        except DegenerateDataError as exc:
            rows.append(row(bm.block, verdict=Verdict.NOT_APPLICABLE, note=str(exc)))
            continue
        values = {"effect_tuning": np.nan, "p_tuning": np.nan, "median_rho_all": float(np.nanmedian(bm.rho_tuning_all))}
        rho = bm.rho_tuning
        keep_o, keep_s = over & np.isfinite(rho), skip & np.isfinite(rho)
        try:
            b = mann_whitney(rho[keep_o], rho[keep_s], alternative="less", rng=rng, n_boot=0)
            values.update(effect_tuning=b.effect, p_tuning=b.p_value)
            sig_b.append(b.p_value)
        except DegenerateDataError:
            pass
        rows.append(row(bm.block, a, values=values))
    result = summarize(ctx, rows, direction=-1)
    tested = [r for r in result.rows if r.verdict in (Verdict.HOLDS, Verdict.FAILS)]
    if not tested:
        return result
    alpha = ctx.options.alpha
    n_sig = sum(r.verdict == Verdict.HOLDS for r in tested) + sum(p * len(sig_b) < alpha for p in sig_b)
    n_tests = len(tested) + len(sig_b)
    mixed = 0 < n_sig < n_tests
    return result.with_(verdict=Verdict.HOLDS if mixed else Verdict.FAILS, statistic=n_sig / n_tests,
                        values={**result.values, "n_significant": n_sig, "n_tests": n_tests},
                        reason=f"{n_sig}/{n_tests} inhibition tests significant: evidence is "
                               f"{'mixed' if mixed else 'uniform'}")
