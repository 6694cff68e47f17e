"""C3: skip channels have lower-magnitude block weights ("bypass by lower-magnitude block outputs", P1)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, register, row, summarize
from resstream_assert.errors import DegenerateDataError
from resstream_assert.results import Verdict
from resstream_assert.stats import partial_spearman, spearman_permutation


@register("C3", "Skip channels have lower branch gain (|gamma| of the branch's last norm)", "P1",
          "one-sided Spearman (M vs branch gain) with a seeded permutation p-value, Holm across non-downsample "
          "blocks; conv magnitude, partial and log-M versions reported beside it", mostly=1.0,
          boundary=Boundary(-0.10, -1, "Spearman rho of M with the branch gain", limits=(-1.0, 1.0)))
def branch_gain(ctx: ClaimContext):
    """C3: in every non-downsample block, Spearman(M_c, |gamma_c|) < 0.

    Uses the principled M (P1 convention): undefined channels are dropped and counted, a silent
    branch (M = inf) ranks highest. Branch gains that are all equal (a freshly initialized
    norm, NC-rand) make rho undefined: ``not_applicable``.

    Example:
        >>> branch_gain(ctx).rows[0].effect  # doctest: +SKIP
    """
    rows, panels = [], []
    for bm in ctx.analysed():
        if ctx.map[bm.index].projection:
            continue  # the papers analyse identity-shortcut blocks only (1.1, 2.1, 3.1)
        if bm.branch_gain is None:
            rows.append(row(bm.block, verdict=Verdict.NOT_APPLICABLE, note="the branch has no norm or layer scale"))
            continue
        m = bm.mix_ratio("p1")
        ok = ~np.isnan(m)
        m_rank = np.full(m.shape, np.nan)
        m_rank[ok] = rankdata(m[ok])  # Spearman needs only the order; M = inf (silent branch) ranks highest
        gain, conv = bm.branch_gain[ok], (bm.conv_magnitude[ok] if bm.conv_magnitude is not None else None)
        note = "gain is a fused-conv proxy" if bm.gain_kind == "fused_conv_proxy" else ""
        few = ctx.too_few(bm, int(ok.sum()))
        if few is not None:
            rows.append(few)
            continue
        if np.ptp(gain) == 0:
            rows.append(row(bm.block, verdict=Verdict.NOT_APPLICABLE, n=int(ok.sum()),
                            note=f"all branch gains equal {gain[0]:.3g} (untrained norm?): rho undefined"))
            continue
        rng = ctx.rng(bm.index)
        try:
            test = spearman_permutation(m_rank[ok], gain, alternative="less", rng=rng,
                                        n_resamples=ctx.options.n_resamples, n_boot=ctx.options.n_boot)
        except DegenerateDataError as exc:
            rows.append(row(bm.block, verdict=Verdict.NOT_APPLICABLE, note=f"rho undefined: {exc}"))
            continue
        values = {"rho": test.effect, "n_undefined": int((~ok).sum()), **_secondary(m[ok], m_rank[ok], gain, conv, rng)}
        rows.append(row(bm.block, test, values=values, note=note))
        panels.append({"label": bm.block, "x": np.log10(np.clip(m[ok], 1e-3, 1e3)).tolist(), "y": gain.tolist(),
                       "note": f"rho={test.effect:+.2f} p={test.p_value:.2g}"})
    if not rows:
        return summarize(ctx, [row("all blocks", verdict=Verdict.NOT_APPLICABLE,
                                         note="no identity-shortcut block to analyse")], direction=-1)
    return summarize(ctx, rows, direction=-1, figures={"m_vs_gain": {
        "type": "scatter", "title": "Mix ratio vs branch gain", "xlabel": "log10 M (P1, clipped at 1e3)",
        "ylabel": "|gamma| of the branch's last norm", "panels": panels}})


def _secondary(m: np.ndarray, m_rank: np.ndarray, gain: np.ndarray, conv: np.ndarray | None, rng) -> dict[str, float]:
    """Conv magnitude rho, partial rho (gain | conv) and the log-M rho without coded values (spec C3)."""
    out: dict[str, float] = {}
    finite = np.isfinite(m) & (m > 0)

    def safe(key: str, fn) -> None:
        try:
            t = fn()
            out[key], out[key.replace("rho", "p")] = t.effect, t.p_value
        except DegenerateDataError:
            out[key] = math.nan

    if conv is not None:
        safe("rho_conv", lambda: spearman_permutation(m_rank, conv, alternative="less", rng=rng, n_resamples=999,
                                                      n_boot=0))
        safe("rho_partial", lambda: partial_spearman(m_rank, gain, conv, alternative="less", rng=rng, n_resamples=999,
                                                     n_boot=0))
    safe("rho_logm", lambda: spearman_permutation(np.log(m[finite]), gain[finite], alternative="less", rng=rng,
                                                  n_resamples=999, n_boot=0))
    return out
