"""C6 and C9: the mechanism behind the scale-invariant channels (P1, P2).

- C6 (equivariance): within mix channels the block prefers a zoomed-in copy of the input's
  feature, and specifically so. Four exact one-sided tests per block, all of which must reject
  (intersection-union; the block p is the largest, the effect the binding test's, all in shares
  of mix channels):

  1. ``SM_B > 0`` in more than half (sign test; effect: share positive - 1/2);
  2. the branch responds more to the zoomed-in than to the zoomed-out input exemplars, on the
     symmetric pair ``S_sym`` / ``Sinv_sym`` (same bilinear kernel, window and grey frame, zoom
     sqrt(2) each way: :mod:`resstream_assert.stimuli.variants`), sign test; the papers' ``S`` and
     ``Sinv`` differ in blur and padding too (W6), which a block can prefer with no scale preference;
  3. ``SM_B > 0`` more often on the channel's own input exemplars than on another channel's
     (exact McNemar against the channel-mismatch null; effect: the difference of the two shares);
  4. the same against a horizontal flip (the transform-control null).

  3 and 4 make the test channel- and scale-specific: a zoom preference that every branch channel
  shows on any image (e.g. NC-perm, whose branch channel no longer sees its own input feature)
  passes 1 and 2 but not 3. ``ΔB`` is a difference of ReLU'd responses: it cannot be negative in
  a channel whose block does not respond to the input's exemplars, so any transform that adds
  variance pushes the share of positive ``SM_B`` above one half; 2-4 compare two transforms on the
  same channels, which cancels that. The continuous peak zoom ``z*`` and the papers' Wilcoxon of
  ``ΔB(S) - ΔB(S^-1)`` are reported.
- C9 (summation): for channels meeting the P2 criterion, the zoom-response curve of the sum
  (Post) is flatter than the flatter of its two summands (In, Pre), **and** freezing either
  summand at its mean over zooms makes the sum less flat. The counterfactuals are part of
  the gate because the first comparison alone holds for any two independent noisy summands
  of similar size (averaging shrinks relative variation by about 1/sqrt(2)); only the
  counterfactuals see whether In and Pre actually compensate each other across zooms.

Selected-channel tests need enough channels to reach alpha at all: an exact sign or
signed-rank test on ``n`` channels cannot go below ``2**-n``, so blocks with fewer
channels than :func:`min_selected` are inconclusive rather than failed.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ZOOM_VARIANTS, ClaimContext, register, row, summarize
from resstream_assert.errors import DegenerateDataError
from resstream_assert.measures import MIX, UNDEFINED, flatness, p2_selected
from resstream_assert.results import BlockRow, TestResult, Verdict
from resstream_assert.stats import binomial_proportion, mann_whitney, mcnemar_exact, sign_test, wilcoxon_signed_rank

NEEDS_ZOOM = ("id", "S", "Sinv") + ZOOM_VARIANTS
NEEDS_C6 = ("id", "S", "Sinv", "flip", "S_sym", "Sinv_sym") + ZOOM_VARIANTS


def min_selected(alpha: float) -> int:
    """Fewest channels for which an exact one-sided sign / signed-rank test can reach ``alpha``.

    Example:
        >>> min_selected(0.05)
        5
    """
    return max(1, math.floor(math.log2(1.0 / alpha)) + 1)


def _safe(fn, prefix: str) -> dict[str, float]:
    """p-value and effect of a secondary test as row values (NaN when the data cannot support it)."""
    try:
        t = fn()
        return {f"p_{prefix}": t.p_value, f"effect_{prefix}": t.effect}
    except DegenerateDataError:
        return {f"p_{prefix}": math.nan, f"effect_{prefix}": math.nan}


def _paired_greater(x: np.ndarray, y: np.ndarray, rng, n_boot: int) -> TestResult:
    """Wilcoxon x > y; all-zero differences mean "no difference at all" (p = 1, effect 0), not missing data."""
    try:
        return wilcoxon_signed_rank(x, y, alternative="greater", rng=rng, n_boot=n_boot)
    except DegenerateDataError:
        return TestResult(0.0, 1.0, 0.0, 0.0, 0.0, 0, "wilcoxon signed-rank (all differences zero)", "greater",
                          "matched_rank_biserial")


def peak_zoom(curves: np.ndarray, zooms: np.ndarray) -> np.ndarray:
    """The zoom ``z*`` maximising each channel's curve ``(C, Z)``; NaN for a constant curve.

    Example:
        >>> peak_zoom(np.array([[1., 3., 2.], [0., 0., 0.]]), np.array([1., 1.5, 2.])).tolist()
        [1.5, nan]
    """
    z = zooms[np.argmax(curves, axis=1)].astype(float)
    z[np.ptp(curves, axis=1) == 0] = np.nan
    return z


def _zstar_values(bm, mix: np.ndarray) -> dict[str, float]:
    """Continuous version of C6: peak zoom of Pre on the input's exemplars, within mix channels.

    All zooms are >= 1, so "median log z* > 0" means more than half peak above z = 1 (binomial
    vs 0.5). A flat-noise curve peaks above 1 with probability (Z-1)/Z, so that rate is
    reported and tested too: beating 0.5 alone is weak evidence.
    """
    if not bm.zoom:
        return {}
    zs = peak_zoom(bm.zoom["pre_on_xi"][mix], bm.zoom["zooms"])
    zs = zs[np.isfinite(zs)]
    chance = 1.0 - 1.0 / bm.zoom["zooms"].size
    vals = {"n_zstar": zs.size, "zstar_chance": chance}
    if zs.size:
        k = int((zs > 1).sum())
        vals.update(frac_zstar_gt1=k / zs.size, median_log_zstar=float(np.median(np.log(zs))),
                    p_zstar=binomial_proportion(k, zs.size, p0=0.5).p_value,
                    p_zstar_vs_chance=binomial_proportion(k, zs.size, p0=chance).p_value)
    return vals


def _share_excess(test: TestResult, scale: float = 1.0, centre: float = 0.5) -> TestResult:
    """A sign / McNemar test re-expressed as a share excess: ``scale * (effect - centre)`` (CI alike)."""
    return replace(test, effect=scale * (test.effect - centre), ci_low=scale * (test.ci_low - centre),
                   ci_high=scale * (test.ci_high - centre), effect_name="share_excess")


def _versus(pos: np.ndarray, other: np.ndarray) -> TestResult:
    """Exact one-sided McNemar that ``pos`` holds in more channels than ``other``; effect = the difference of
    the two shares over all ``n`` channels, ``(b - c) / n``, with the conditional Clopper-Pearson CI."""
    b, c = int((pos & ~other).sum()), int((~pos & other).sum())
    if b + c == 0:
        return TestResult(0.0, 1.0, 0.0, 0.0, 0.0, pos.size, "exact mcnemar (no discordant channels)", "greater",
                          "share_excess")
    t = mcnemar_exact(b, c, alternative="greater")
    return _share_excess(t, (b + c) / pos.size, 0.0)


def _components(s, mix: np.ndarray) -> dict[str, TestResult]:
    """C6's four tests in share units (see :func:`equivariance`); a component without data has p = 1."""
    smb = s["sm_b"][mix]
    out: dict[str, TestResult] = {}
    for name, x in (("sign", smb), ("direction", s["delta_b_sym"][mix])):
        try:
            out[name] = _share_excess(sign_test(x, alternative="greater"))
        except DegenerateDataError:
            out[name] = TestResult(0.0, 1.0, 0.0, 0.0, 0.0, 0, "exact sign test (all zero)", "greater",
                                   "share_excess")
    pos = smb > 0
    out["mismatch"] = _versus(pos, s["sm_b_mismatch"][mix] > 0)
    out["flip"] = _versus(pos, s["sm_b_flip"][mix] > 0)
    return out


BINDING = {"sign": "SM_B > 0", "direction": "zoom in vs zoom out", "mismatch": "vs another channel's exemplars",
           "flip": "vs a flip"}


def _c6_row(ctx: ClaimContext, bm, s, mix: np.ndarray, values: dict):
    """The block's row: the intersection-union of the four components, the binding one's effect."""
    rng = ctx.rng(bm.index)
    smb = s["sm_b"][mix]
    values.update(_safe(lambda: wilcoxon_signed_rank(smb, alternative="greater", rng=rng, n_boot=0), "wilcoxon_smb"))
    papers = _paired_greater(s["delta_b"][mix], s["delta_b_rev"][mix], rng, 0)
    values.update(p_papers_s_vs_sinv=papers.p_value, effect_papers_s_vs_sinv=papers.effect)
    smi = s["sm_i"][mix]
    values.update(_safe(lambda: sign_test(smi[np.isfinite(smi)], alternative="greater"), "smi"))
    parts = _components(s, mix)
    for name, t in parts.items():
        values.update({f"p_{name}": t.p_value, f"effect_{name}": t.effect, f"ci_low_{name}": t.ci_low,
                       f"ci_high_{name}": t.ci_high})
    values["frac_pos_smb_mismatch"] = float((s["sm_b_mismatch"][mix] > 0).mean())
    values["frac_pos_smb_flip"] = float((s["sm_b_flip"][mix] > 0).mean())
    values["frac_zoom_in_beats_out"] = float((s["delta_b_sym"][mix] > 0).mean())
    binding = max(parts, key=lambda k: (parts[k].p_value, -parts[k].effect))
    test = replace(parts[binding], statistic=parts[binding].effect, n=int(mix.sum()),
                   method=f"intersection-union of 4 exact tests; binding: {BINDING[binding]}")
    return row(bm.block, test, values=values, note=f"binding: {BINDING[binding]}")


@register("C6", "Block features are larger-scale copies of the input features (scale equivariance)", "P1, P2",
          "per block, within the mix channels (P1 band), four exact one-sided tests, all must reject "
          "(intersection-union, block p = the largest): sign test SM_B > 0; sign test that the branch responds more "
          "to the zoomed-in than to the zoomed-out input exemplars (symmetric pair S_sym / Sinv_sym); McNemar SM_B > 0 "
          "on the channel's own vs another channel's exemplars; McNemar vs a flip. Effect = the binding test's share "
          "excess; z* reported; Holm across blocks",
          needs=NEEDS_C6,
          boundary=Boundary(0.10, +1, "share of mix channels above chance (the binding test's)", "mix channels",
                            limits=(-1.0, 1.0)))
def equivariance(ctx: ClaimContext):
    """C6: within mix channels, zooming into the input's exemplars raises the block's response, specifically.

    Example:
        >>> equivariance(ctx).rows[0].values["p_mismatch"]  # doctest: +SKIP
    """
    rows: list[BlockRow] = []
    bars: dict[str, list] = {"SM_B > 0 (zoom in)": [], "on another channel's exemplars": [], "under a flip": [],
                             "zoom in beats zoom out (symmetric)": [], "z* > 1": []}
    cats, hists, pooled = [], [], []
    floor = min_selected(ctx.options.alpha)
    for bm in ctx.analysed():
        lacking = ctx.lacking(bm, "scale", "flip")
        if lacking is None and "delta_b_sym" not in bm.scale:
            lacking = row(bm.block, verdict=Verdict.NOT_APPLICABLE,
                          note="needs the symmetric zoom pair, stimulus variants S_sym and Sinv_sym")
        if lacking is not None:
            rows.append(lacking)
            continue
        s = bm.scale
        cat = bm.category("p1")
        ok = (cat != UNDEFINED) & np.isfinite(s["sm_b"])
        mix = ok & (cat == MIX)
        smb = s["sm_b"][mix]
        values = {"n_defined": int(ok.sum()), "n_undefined": int((~ok).sum()), "n_mix": int(mix.sum()),
                  "n_zero_smb": int((smb == 0).sum()),
                  "frac_pos_smb": float((smb > 0).mean()) if smb.size else math.nan,
                  "median_smb": float(np.median(smb)) if smb.size else math.nan, **_zstar_values(bm, mix)}
        cats.append(bm.block)
        pct = lambda a: 100.0 * float(np.mean(a)) if np.size(a) else math.nan  # noqa: E731
        bars["SM_B > 0 (zoom in)"].append(pct(smb > 0))
        bars["on another channel's exemplars"].append(pct(s["sm_b_mismatch"][mix] > 0))
        bars["under a flip"].append(pct(s["sm_b_flip"][mix] > 0))
        bars["zoom in beats zoom out (symmetric)"].append(pct(s["delta_b_sym"][mix] > 0))
        bars["z* > 1"].append(100.0 * values.get("frac_zstar_gt1", math.nan))
        if "n_zstar" in values and bm.zoom:
            zs = peak_zoom(bm.zoom["pre_on_xi"][mix], bm.zoom["zooms"])
            edges = _edges(bm.zoom["zooms"])
            hists.append({"label": bm.block, "edges": edges,
                          "counts": np.histogram(zs[np.isfinite(zs)], edges)[0].tolist()})
        few = ctx.too_few(bm, int(ok.sum()), values=values)
        if few is None:
            few = ctx.too_few(bm, int((smb != 0).sum()), what="mix channels with SM_B != 0", floor=floor,
                              values=values, suffix=": the sign test cannot reach alpha")
        if few is not None:
            rows.append(few)
            continue
        rows.append(_c6_row(ctx, bm, s, mix, values))
        pooled.append(smb)
    figures = {"equivariance_fractions": {
        "type": "bars", "title": "Mix channels (P1) whose block prefers the zoomed-in input feature, and its nulls",
        "xlabel": "block", "ylabel": "% of mix channels",
        "panels": [{"label": "all blocks", "categories": cats, "series": bars}]}}
    if hists:
        figures["peak_zoom_hist"] = {"type": "hist", "title": "Peak zoom z* of Pre on the input's exemplars",
                                     "xlabel": "z*", "ylabel": "mix channels", "panels": hists}
    smb_all = np.concatenate(pooled) if pooled else np.array([])
    values = {"frac_pos_smb": float((smb_all > 0).mean()), "n_mix": smb_all.size} if smb_all.size else {}
    return summarize(ctx, rows, direction=1, values=values, figures=figures, thresholds={"min_selected": floor})


def _edges(zooms: np.ndarray) -> list[float]:
    """Histogram edges half-way between consecutive zoom levels."""
    z = np.asarray(zooms, dtype=float)
    mids = (z[1:] + z[:-1]) / 2
    return [float(z[0] - (mids[0] - z[0]))] + mids.tolist() + [float(z[-1] + (z[-1] - mids[-1]))]


def _normalised(curves: np.ndarray) -> np.ndarray:
    """ReLU'd curves divided by their max (the author's scale-curve score); channels never positive dropped."""
    pos = np.maximum(curves, 0.0)
    top = pos.max(axis=1)
    return pos[top > 0] / top[top > 0, None]


def _curve_panel(bm, sel: np.ndarray, others: np.ndarray) -> dict:
    """Mean normalised In / Pre / Post curves of selected vs other channels, with +-1.96 SEM bands."""
    series, bands = {}, {}
    for group, mask in (("selected", sel), ("others", others)):
        for site, key in (("Post", "post"), ("In", "in"), ("Pre", "pre")):
            c = _normalised(bm.zoom[key][mask])
            name = f"{site} ({group})"
            if not c.shape[0]:
                continue
            mean = c.mean(axis=0)
            series[name] = mean.tolist()
            if group == "selected" and c.shape[0] > 1:
                half = 1.96 * c.std(axis=0, ddof=1) / math.sqrt(c.shape[0])
                bands[name] = {"low": (mean - half).tolist(), "high": (mean + half).tolist()}
    return {"label": bm.block, "x": bm.zoom["zooms"].tolist(), "series": series, "bands": bands}


@register("C9", "Scale invariance is computed by the residual sum of scale-equivariant copies", "P2",
          "per block, within P2-criterion channels: one-sided paired Wilcoxon that flatness (min/max of the ReLU'd "
          "zoom curve) of Post exceeds max(flat In, flat Pre), and that freezing In (resp. Pre) at its mean over "
          "zooms lowers Post's flatness; block p = max of the three (intersection-union); Mann-Whitney of flat "
          "Post, selected vs other channels, reported; Holm across blocks",
          needs=NEEDS_ZOOM,
          boundary=Boundary(0.20, +1, "rank-biserial r, the weakest of three comparisons", "selected channels",
                            limits=(-1.0, 1.0)))
def summation(ctx: ClaimContext):
    """C9: the sum is flatter over zoom than either summand, and needs both to be (counterfactuals).

    Example:
        >>> summation(ctx).rows[0].values["p_cf_in"]  # doctest: +SKIP
    """
    rows, panels, pooled = [], [], []
    floor = min_selected(ctx.options.alpha)
    for bm in ctx.analysed():
        block_row, panel, pair = _summation_block(ctx, bm, floor)
        rows.append(block_row)
        if panel is not None:
            panels.append(panel)
        if pair is not None:
            pooled.append(pair)
    figures = {"zoom_response": {"type": "lines", "title": "Zoom-response curves (ReLU'd, / max), P2-criterion channels",
                                 "xlabel": "zoom", "ylabel": "normalised response", "panels": panels}}
    values = {}
    if pooled:
        post, best = (np.concatenate(a) for a in zip(*pooled))
        values = {"median_flat_post_sel": _median(post), "median_flat_best_sel": _median(best),
                  "frac_sum_flatter": float((post > best).mean()), "n_selected": post.size}
    return summarize(ctx, rows, direction=1, values=values, figures=figures, thresholds={"min_selected": floor})


def _summation_block(ctx: ClaimContext, bm, floor: int
                     ) -> tuple[BlockRow, dict | None, tuple[np.ndarray, np.ndarray] | None]:
    """C9 on one block: its row, its curve panel (None when it lacks the zoom quantities), and the sum's and
    the better summand's flatness over its selected channels for the pooled values (None when untested).

    Example:
        >>> block_row, panel, pair = _summation_block(ctx, ctx.analysed()[0], 6)  # doctest: +SKIP
    """
    lacking = ctx.lacking(bm, "scale", "zoom")
    if lacking is not None:
        return lacking, None, None
    z = bm.zoom
    f_post, f_in, f_pre = flatness(z["post"]), flatness(z["in"]), flatness(z["pre"])
    with np.errstate(invalid="ignore"):
        # A summand that is never positive has no flatness; the better summand is then the other one.
        best = np.fmax(f_in, f_pre)
    frozen_in = flatness(z["in"].mean(axis=1, keepdims=True) + z["pre"])
    frozen_pre = flatness(z["in"] + z["pre"].mean(axis=1, keepdims=True))
    chosen = p2_selected(bm)
    # Only channels whose selection is defined count, so "others" are truly non-selected.
    ok = (np.isfinite(f_post) & np.isfinite(best) & np.isfinite(bm.scale["sm_b"])
          & (bm.category("p2") != UNDEFINED))
    sel, others = ok & chosen, ok & ~chosen
    values = {"n_defined": int(ok.sum()), "n_selected": int(sel.sum()), "n_others": int(others.sum()),
              "median_flat_post_sel": _median(f_post[sel]), "median_flat_best_sel": _median(best[sel]),
              "median_flat_post_others": _median(f_post[others])}
    panel = _curve_panel(bm, sel, others)
    few = ctx.too_few(bm, int(ok.sum()), what="channels with defined flatness", values=values)
    if few is None:
        few = ctx.too_few(bm, int(sel.sum()), what="selected channels", floor=floor, values=values,
                          suffix=": the signed-rank test cannot reach alpha")
    if few is not None:
        return few, panel, None
    rng = ctx.rng(bm.index)
    nb = ctx.options.n_boot
    main = _paired_greater(f_post[sel], best[sel], rng, nb)
    cf_in = _paired_greater(f_post[sel], frozen_in[sel], rng, nb)
    cf_pre = _paired_greater(f_post[sel], frozen_pre[sel], rng, nb)
    values.update(p_sum_vs_best=main.p_value, effect_sum_vs_best=main.effect,
                  p_cf_in=cf_in.p_value, effect_cf_in=cf_in.effect,
                  p_cf_pre=cf_pre.p_value, effect_cf_pre=cf_pre.effect)
    values.update(_safe(lambda: mann_whitney(f_post[sel], f_post[others], alternative="greater", rng=rng,
                                             n_boot=0), "selected_vs_others"))
    # Intersection-union: the block holds only if all three comparisons do; the effect is
    # the weakest of the three rank-biserial effects.
    weakest = min((main, cf_in, cf_pre), key=lambda t: t.effect)
    test = replace(main, p_value=max(main.p_value, cf_in.p_value, cf_pre.p_value), effect=weakest.effect,
                   ci_low=weakest.ci_low, ci_high=weakest.ci_high, n=int(sel.sum()))
    note = {id(main): "weakest: sum vs best summand", id(cf_in): "weakest: freeze In",
            id(cf_pre): "weakest: freeze Pre"}[id(weakest)]
    return row(bm.block, test, values=values, note=note), panel, (f_post[sel], best[sel])


def _median(a: np.ndarray) -> float:
    return float(np.median(a)) if a.size else math.nan
