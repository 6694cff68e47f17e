"""C6 and C9: the mechanism behind the scale-invariant channels (P1, P2).

- C6 (equivariance): within mix channels the block prefers a zoomed-in copy of the input's
  feature: ``SM_B > 0`` in more than half of them (exact sign test) **and** zooming in raises
  the block's response more than zooming out (paired Wilcoxon of ``ΔB(S) - ΔB(S⁻¹)``); the
  continuous peak zoom ``z*`` is reported. The sign test alone is not a valid test of a
  preference for zooming in: ``ΔB`` is a difference of ReLU'd responses, so it cannot be
  negative in a channel whose block does not respond to the input's exemplars at all, and any
  transform that merely adds variance (or a block that regresses from an inhibited response)
  pushes the fraction of positive ``SM_B`` above one half. Under "the block treats zooming in
  and out alike" the paired differences are symmetric, so requiring both keeps the false-positive
  rate at alpha (``python -m calibration.calibrate fpr``, README "Calibration and power": on
  synthetic responses whose transforms only add noise, 256 channels per block, the sign test
  alone rejected in 23% of blocks at p < 0.05; the intersection-union rejects in 3%).
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
from resstream_assert.results import TestResult
from resstream_assert.stats import binomial_proportion, mann_whitney, mcnemar_exact, sign_test, wilcoxon_signed_rank

NEEDS_ZOOM = ("id", "S", "Sinv") + ZOOM_VARIANTS


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


@register("C6", "Block features are larger-scale copies of the input features (scale equivariance)", "P1, P2",
          "per block, within the mix channels (P1 band): exact one-sided sign test that SM_B > 0 in more than half "
          "(zeros dropped; effect = fraction positive - 0.5) and one-sided paired Wilcoxon that dB(S) > dB(S^-1); "
          "block p = max of the two (intersection-union); Wilcoxon on SM_B, the SM_I sign test, McNemar vs the "
          "mismatch and flip nulls and the peak-zoom z* test reported as row values; Holm across blocks",
          needs=NEEDS_ZOOM,
          boundary=Boundary(0.10, +1, "share of mix channels above the chance share", "mix channels"))
def equivariance(ctx: ClaimContext):
    """C6: within mix channels, zooming into the input's exemplars raises the block's response.

    Example:
        >>> equivariance(ctx).rows[0].values["frac_pos_smb"]  # doctest: +SKIP
    """
    rows, bars = [], {"SM_B > 0 (zoom in)": [], "reversed SM_B > 0 (zoom out)": [], "SM_I > 0": [],
                      "z* > 1": []}
    cats, hists, pooled = [], [], []
    floor = min_selected(ctx.options.alpha)
    for bm in ctx.analysed():
        lacking = ctx.lacking(bm, "scale")
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
        bars["reversed SM_B > 0 (zoom out)"].append(pct(s["sm_b_rev"][mix] > 0))
        bars["SM_I > 0"].append(pct(s["sm_i"][mix & np.isfinite(s["sm_i"])] > 0))
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
        rng = ctx.rng(bm.index)
        values.update(_safe(lambda: wilcoxon_signed_rank(smb, alternative="greater", rng=rng, n_boot=0), "wilcoxon_smb"))
        direction = _paired_greater(s["delta_b"][mix], s["delta_b_rev"][mix], rng, 0)
        values.update(p_direction=direction.p_value, effect_direction=direction.effect)
        smi = s["sm_i"][mix]
        values.update(_safe(lambda: sign_test(smi[np.isfinite(smi)], alternative="greater"), "smi"))
        values.update(_versus_nulls(s, mix))
        test = sign_test(smb, alternative="greater")
        values["p_sign"] = test.p_value
        # Report the excess over a coin flip so that "no tendency" reads as effect 0; the block p is the
        # larger of the sign test's and the zoom-in-vs-zoom-out test's (intersection-union).
        test = replace(test, p_value=max(test.p_value, direction.p_value), effect=test.effect - 0.5,
                       ci_low=test.ci_low - 0.5, ci_high=test.ci_high - 0.5)
        note = "binding: zoom in vs zoom out" if direction.p_value > values["p_sign"] else ""
        rows.append(row(bm.block, test, values=values, note=note))
        pooled.append(smb)
    figures = {"equivariance_fractions": {
        "type": "bars", "title": "Mix channels (P1) whose block prefers the zoomed-in input feature",
        "xlabel": "block", "ylabel": "% of mix channels",
        "panels": [{"label": "all blocks", "categories": cats, "series": bars}]}}
    if hists:
        figures["peak_zoom_hist"] = {"type": "hist", "title": "Peak zoom z* of Pre on the input's exemplars",
                                     "xlabel": "z*", "ylabel": "mix channels", "panels": hists}
    smb_all = np.concatenate(pooled) if pooled else np.array([])
    values = {"frac_pos_smb": float((smb_all > 0).mean()), "n_mix": smb_all.size} if smb_all.size else {}
    return summarize(ctx, rows, direction=1, values=values, figures=figures, thresholds={"min_selected": floor})


def _versus_nulls(s, mix: np.ndarray) -> dict[str, float]:
    """SM_B > 0 vs the same on another channel's exemplars and under a flip (exact McNemar, reported).

    The sign test's 0.5 ignores that S and S^-1 are not symmetric perturbations (W6): a
    channel-unspecific preference for zoomed-in images also passes it; these say whether
    the preference is specific to the channel's own input feature and to scaling.
    """
    pos = s["sm_b"][mix] > 0
    out: dict[str, float] = {}
    for name, key in (("mismatch", "sm_b_mismatch"), ("flip", "sm_b_flip")):
        if key not in s:
            continue
        other = s[key][mix] > 0
        b, c = int((pos & ~other).sum()), int((~pos & other).sum())
        out[f"frac_pos_smb_{name}"] = float(other.mean()) if other.size else math.nan
        out[f"p_vs_{name}"] = mcnemar_exact(b, c, alternative="greater").p_value if b + c else 1.0
    return out


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
          boundary=Boundary(0.20, +1, "rank-biserial r, the weakest of three comparisons", "selected channels"))
def summation(ctx: ClaimContext):
    """C9: the sum is flatter over zoom than either summand, and needs both to be (counterfactuals).

    Example:
        >>> summation(ctx).rows[0].values["p_cf_in"]  # doctest: +SKIP
    """
    rows, panels, pooled = [], [], []
    floor = min_selected(ctx.options.alpha)
    for bm in ctx.analysed():
        lacking = ctx.lacking(bm, "scale", "zoom")
        if lacking is not None:
            rows.append(lacking)
            continue
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
        panels.append(_curve_panel(bm, sel, others))
        few = ctx.too_few(bm, int(ok.sum()), what="channels with defined flatness", values=values)
        if few is None:
            few = ctx.too_few(bm, int(sel.sum()), what="selected channels", floor=floor, values=values,
                              suffix=": the signed-rank test cannot reach alpha")
        if few is not None:
            rows.append(few)
            continue
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
        rows.append(row(bm.block, test, values=values, note=note))
        pooled.append((f_post[sel], best[sel]))
    figures = {"zoom_response": {"type": "lines", "title": "Zoom-response curves (ReLU'd, / max), P2-criterion channels",
                                 "xlabel": "zoom", "ylabel": "normalised response", "panels": panels}}
    values = {}
    if pooled:
        post, best = (np.concatenate(a) for a in zip(*pooled))
        values = {"median_flat_post_sel": _median(post), "median_flat_best_sel": _median(best),
                  "frac_sum_flatter": float((post > best).mean()), "n_selected": post.size}
    return summarize(ctx, rows, direction=1, values=values, figures=figures, thresholds={"min_selected": floor})


def _median(a: np.ndarray) -> float:
    return float(np.median(a)) if a.size else math.nan
