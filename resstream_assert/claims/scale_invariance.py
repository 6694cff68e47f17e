"""C5, C7, C8: how many residual-stream channels are scale-invariant, against calibrated nulls.

A channel meets the P1 criterion (spec §2.8) when ``SM_B > 0 ∧ SM_I > 0`` and its mix ratio
is in the band ``2/3 < M < 3/2`` (P1 convention); the P2 criterion drops ``SM_I`` and uses the
P2 convention. With an unrelated transform each ``Δ > 0`` is about a coin flip (W7), so a
raw fraction says nothing: every block is tested against three nulls computed on the same
channels (spec C5): the direction-reversed criterion (S and S⁻¹ swapped), the
horizontal-flip transform and the channel-mismatch (SM_B on another channel's exemplars).
A block holds when its fraction exceeds all three (intersection-union test: the block p is
the largest of the three p-values, which is a level-alpha test of "exceeds every null").

C6 and C9 (the mechanism claims) live in :mod:`resstream_assert.claims.scale_mechanism`;
the P2 selection itself (S*) is :func:`resstream_assert.measures.p2_selected`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, lacks, register, row, summarize
from resstream_assert.stats.effects import bootstrap_ci, clopper_pearson
from resstream_assert.errors import DegenerateDataError
from resstream_assert.measures import MIX, UNDEFINED
from resstream_assert.paper import BLOCK_CHANNELS, SCALE_INVARIANT_CHANNELS
from resstream_assert.results import BlockRow, TestResult, Verdict
if TYPE_CHECKING:
    from resstream_assert.loading.spec import ModelSpec
from resstream_assert.stats import (cochran_armitage, fisher_exact_greater,
                                    hypergeometric_overlap, mcnemar_exact)

NEEDS_SCALE = ("id", "S", "Sinv", "flip")
NULLS = ("reversed", "flip", "mismatch")
REFERENCE_TOLERANCE = 0.06  # spec C8: +-6 pp given single-seed FZ noise (reported, never gated)


@dataclass(frozen=True)
class Outcomes:
    """0/1 outcomes of a criterion and its nulls on one block's defined channels.

    ``scale`` is the criterion's scale condition alone (P1: ``SM_B > 0 ∧ SM_I > 0``; the
    "No Mix Criterion"); ``hit = scale ∧ mix``; ``nulls`` the same criterion under each null.
    ``index`` maps back to channel numbers.

    Example:
        >>> out = criterion_outcomes(bm, "p1")  # doctest: +SKIP
        >>> out.hit.mean()  # doctest: +SKIP
    """

    index: np.ndarray
    scale: np.ndarray
    mix: np.ndarray
    hit: np.ndarray
    nulls: dict
    n_undefined: int


def criterion_outcomes(bm, convention: str) -> Outcomes:
    """Outcomes of the P1 (``"p1"``) or P2 (``"p2"``) criterion and its three nulls for one block.

    A channel is defined when every quantity used (SM terms of the criterion and its nulls,
    the mix ratio) is; the rest are excluded and counted (``n_undefined``).

    Example:
        >>> criterion_outcomes(bm, "p2").nulls["reversed"].sum()  # doctest: +SKIP
    """
    s = bm.scale
    cat = bm.category(convention)
    used: tuple[str, ...]
    if convention == "p1":
        used = ("sm_b", "sm_i", "sm_b_rev", "sm_i_rev", "sm_b_flip", "sm_i_flip", "sm_b_mismatch")
        scale = (s["sm_b"] > 0) & (s["sm_i"] > 0)
        nulls = {"reversed": (s["sm_b_rev"] > 0) & (s["sm_i_rev"] > 0),
                 "flip": (s["sm_b_flip"] > 0) & (s["sm_i_flip"] > 0),
                 # the mismatch null only changes the block side; SM_I stays the channel's own
                 "mismatch": (s["sm_b_mismatch"] > 0) & (s["sm_i"] > 0)}
    elif convention == "p2":
        used = ("sm_b", "sm_b_rev", "sm_b_flip", "sm_b_mismatch")
        scale = s["sm_b"] > 0
        nulls = {"reversed": s["sm_b_rev"] > 0, "flip": s["sm_b_flip"] > 0, "mismatch": s["sm_b_mismatch"] > 0}
    else:
        raise ValueError(f"convention must be 'p1' or 'p2', not {convention!r}")
    ok = cat != UNDEFINED
    for key in used:
        ok &= np.isfinite(s[key])
    mix = cat == MIX
    return Outcomes(index=np.flatnonzero(ok), scale=scale[ok], mix=mix[ok], hit=(scale & mix)[ok],
                    nulls={k: (v & mix)[ok] for k, v in nulls.items()}, n_undefined=int((~ok).sum()))


def _margin(hit, rev, flip, mis, axis=-1):
    """f - max(null f): the smallest excess over the three nulls (bootstrapped over channels)."""
    return hit.mean(axis) - np.maximum(np.maximum(rev.mean(axis), flip.mean(axis)), mis.mean(axis))


def _exceeds_nulls(ctx: ClaimContext, bm, out: Outcomes) -> tuple[TestResult, dict]:
    """Fraction of criterion hits vs each null (McNemar vs reversed, Fisher vs flip and mismatch)."""
    n, k = out.hit.size, int(out.hit.sum())
    rev = out.nulls["reversed"]
    b, c = int((out.hit & ~rev).sum()), int((~out.hit & rev).sum())
    # No discordant pair: the data show no difference at all, the exact McNemar p is 1.
    p_rev = mcnemar_exact(b, c, alternative="greater").p_value if b + c else 1.0
    # Fisher treats the paired samples as independent; the nulls share mix (and SM_I for
    # mismatch) with the criterion, so outcomes correlate positively and Fisher is conservative.
    ps = {"reversed": p_rev, **{name: fisher_exact_greater(k, n, int(out.nulls[name].sum()), n).p_value
                                for name in ("flip", "mismatch")}}
    fr = {name: float(out.nulls[name].mean()) for name in NULLS}
    f = k / n
    arrays = [a.astype(float) for a in (out.hit, rev, out.nulls["flip"], out.nulls["mismatch"])]
    lo, hi = bootstrap_ci(_margin, *arrays, n_resamples=ctx.options.n_boot, rng=ctx.rng(bm.index))
    binding = max(ps, key=lambda name: (ps[name], fr[name]))
    test = TestResult(f, max(ps.values()), f - max(fr.values()), lo, hi, n,
                      "intersection-union of McNemar (reversed) and Fisher (flip, mismatch)", "greater",
                      "f - max null f")
    f_lo, f_hi = clopper_pearson(k, n)
    values = {"frac_scale_inv": f, "frac_ci_low": f_lo, "frac_ci_high": f_hi, "k_scale_inv": k,
              "n_defined": n, "n_undefined": out.n_undefined, "mcnemar_b": b, "mcnemar_c": c,
              **{f"frac_{name}": fr[name] for name in NULLS}, **{f"p_{name}": ps[name] for name in NULLS}}
    return test, {"values": values, "binding": binding}


def _mix_association(out: Outcomes) -> dict[str, float]:
    """P(scale | mix) vs P(scale | not mix): the papers tie invariance to mixing (spec C5)."""
    n_mix, n_not = int(out.mix.sum()), int((~out.mix).sum())
    k_mix, k_not = int((out.scale & out.mix).sum()), int((out.scale & ~out.mix).sum())
    vals = {"frac_no_mix": float(out.scale.mean()), "frac_mix": n_mix / out.mix.size, "n_mix": n_mix,
            "p_scale_given_mix": k_mix / n_mix if n_mix else math.nan,
            "p_scale_given_not_mix": k_not / n_not if n_not else math.nan}
    try:
        vals["p_mix_association"] = fisher_exact_greater(k_mix, n_mix, k_not, n_not).p_value
    except DegenerateDataError:
        vals["p_mix_association"] = math.nan
    return vals


def _author_weights(spec: "ModelSpec | None") -> bool:
    """True for torchvision ResNet18 with the author's weights (IMAGENET1K_V1 = DEFAULT) and no control."""
    if spec is None:  # synthetic responses: not the reference model
        return False
    weights = (spec.weights or "").upper().rsplit(".", 1)[-1]
    return (spec.kind == "torchvision" and spec.target == "resnet18" and spec.control is None
            and weights in ("IMAGENET1K_V1", "DEFAULT"))


def _reference(ctx: ClaimContext, bm, out: Outcomes) -> dict[str, float]:
    """Spec §5.2 reference (ResNet18 V1): fraction reported where names match, overlap only for V1 weights."""
    ref = SCALE_INVARIANT_CHANNELS.get(bm.block)
    name = ctx.model_spec.architecture if ctx.model_spec is not None else ctx.model  # a label may be free-form
    if ref is None or "resnet18" not in name.lower() or BLOCK_CHANNELS[bm.block] != bm.channels:
        return {}
    f = float(out.hit.mean()) if out.hit.size else math.nan
    vals = {"reference_frac": len(ref) / bm.channels, "reference_diff": f - len(ref) / bm.channels}
    # Tolerance and channel numbers only mean something for the author's weights.
    if _author_weights(ctx.model_spec):
        vals["within_reference_tolerance"] = float(abs(vals["reference_diff"]) <= REFERENCE_TOLERANCE)
        chosen = set(out.index[out.hit].tolist())
        try:
            t = hypergeometric_overlap(len(chosen & set(ref)), len(ref), len(chosen), bm.channels)
            vals.update(reference_overlap=t.statistic, reference_overlap_p=t.p_value, reference_jaccard=t.effect)
        except DegenerateDataError:
            vals["reference_overlap_p"] = math.nan
    return vals


def fraction_rows(ctx: ClaimContext, convention: str) -> tuple[list[BlockRow], dict, dict]:
    """Per-block rows of "criterion fraction exceeds each null", pooled values and the bars figure.

    Example:
        >>> rows, values, figure = fraction_rows(ctx, "p1")  # doctest: +SKIP
    """
    rows, pooled = [], {"k": 0, "n": 0, **{name: 0 for name in NULLS}, "scale": 0}
    for bm in ctx.analysed():
        lacking = ctx.lacking(bm, "scale", "flip")
        if lacking is not None:
            rows.append(lacking)
            continue
        out = criterion_outcomes(bm, convention)
        extra = _reference(ctx, bm, out) if convention == "p2" else {}
        n = out.hit.size
        few = ctx.too_few(bm, n, values={"n_undefined": out.n_undefined, **extra},
                          suffix=f" ({out.n_undefined} undefined)")
        if few is not None:
            rows.append(few)
            continue
        test, info = _exceeds_nulls(ctx, bm, out)
        values = {**info["values"], **_mix_association(out), **extra}
        rows.append(row(bm.block, test, values=values, note=f"binding null: {info['binding']}"))
        pooled["k"] += int(out.hit.sum())
        pooled["n"] += n
        pooled["scale"] += int(out.scale.sum())
        for name in NULLS:
            pooled[name] += int(out.nulls[name].sum())
    values = {}
    if pooled["n"]:
        values = {"frac_scale_inv": pooled["k"] / pooled["n"], "frac_no_mix": pooled["scale"] / pooled["n"],
                  "n_defined": pooled["n"], **{f"frac_{name}": pooled[name] / pooled["n"] for name in NULLS}}
    return rows, values, {"scale_inv_fraction": fraction_figure(ctx, convention)}


def fraction_figure(ctx: ClaimContext, convention: str) -> dict:
    """Bars: % of defined channels meeting each criterion per block, next to the nulls of ``convention``.

    Example:
        >>> fraction_figure(ctx, "p1")["panels"][0]["series"].keys()  # doctest: +SKIP
    """
    cats: list[str] = []
    series: dict[str, list[float]] = {}
    names = {"p1": ("P1 criterion", "P1 no-mix", "P2 criterion"), "p2": ("P2 criterion", "P2 no-mix", "P1 criterion")}
    for bm in ctx.analysed():
        if lacks(bm, "scale", "flip"):
            continue
        cats.append(bm.block)
        own, other = criterion_outcomes(bm, convention), criterion_outcomes(bm, "p2" if convention == "p1" else "p1")
        pct = lambda a: 100.0 * float(a.mean()) if a.size else math.nan  # noqa: E731
        entries = (pct(own.hit), pct(own.scale), pct(other.hit), *(pct(own.nulls[k]) for k in NULLS))
        labels = (*names[convention], *(f"{k} null ({convention.upper()})" for k in NULLS))
        for label, v in zip(labels, entries):
            series.setdefault(label, []).append(v)
    return {"type": "bars", "title": f"% of channels scale-invariant per block ({convention.upper()} criterion vs nulls)",
            "xlabel": "block", "ylabel": "% of defined channels",
            "panels": [{"label": "all blocks", "categories": cats, "series": series}]}


@register("C5", "Many channels are scale-invariant via a mix of input and block features (P1 criterion)", "P1",
          "per block, the fraction f of defined channels with SM_B>0, SM_I>0 and 2/3<M<3/2 (P1) exceeds each null: "
          "exact McNemar vs direction-reversed, one-sided Fisher vs flip and vs channel-mismatch; block p = max of "
          "the three (intersection-union); effect f - max null f with a channel-bootstrap CI; Holm across blocks",
          needs=NEEDS_SCALE,
          boundary=Boundary(0.05, +1, "scale-invariant share minus the largest null share", limits=(-1.0, 1.0)))
def scale_invariant_p1(ctx: ClaimContext):
    """C5: f_b(P1 criterion) exceeds the direction-reversed, flip and channel-mismatch nulls.

    Example:
        >>> scale_invariant_p1(ctx).values["frac_scale_inv"]  # doctest: +SKIP
    """
    rows, values, figures = fraction_rows(ctx, "p1")
    return summarize(ctx, rows, direction=1, values=values, figures=figures)


@register("C8", "Many channels in intermediate blocks are scale-invariant (P2 criterion)", "P2",
          "per block, the fraction f of defined channels with SM_B>0 and 2/3<M<3/2 (P2 convention) exceeds each "
          "null (McNemar vs reversed, Fisher vs flip and mismatch; p = max of the three); Clopper-Pearson CI on f; "
          "P2's reference fraction (17.97%) reported for ResNet18 blocks 2.1/3.1, never gated",
          needs=NEEDS_SCALE,
          boundary=Boundary(0.05, +1, "scale-invariant share minus the largest null share", limits=(-1.0, 1.0)))
def scale_invariant_p2(ctx: ClaimContext):
    """C8: f_b(P2 criterion) exceeds the nulls; reference fractions reported where they apply.

    Example:
        >>> [r.values.get("reference_frac") for r in scale_invariant_p2(ctx).rows]  # doctest: +SKIP
    """
    rows, values, figures = fraction_rows(ctx, "p2")
    return summarize(ctx, rows, direction=1, values=values, figures=figures,
                     thresholds={"reference_tolerance": REFERENCE_TOLERANCE})


def _stage_key(ctx: ClaimContext, bm) -> float:
    """Spatial area of the block's map (smaller = deeper stage); -channels when the map size is unknown."""
    try:
        spatial = ctx.map[bm.block].spatial
    except (TypeError, IndexError, KeyError, AttributeError):
        spatial = None
    return float(spatial[0] * spatial[1]) if spatial else -float(bm.channels)


@register("C7", "Scale-invariant channels concentrate in early-to-mid blocks", "P1",
          "one-sided Fisher exact test that the pooled P1-criterion fraction over all but the last stage exceeds "
          "the last stage's (stage = blocks with the same spatial size; last = smallest); Cochran-Armitage trend "
          "over block depth (decreasing) reported beside it. Low confidence in the direction: report-only",
          needs=NEEDS_SCALE, gate=False,
          boundary=Boundary(0.05, +1, "early-to-mid minus last-stage scale-invariant share", limits=(-1.0, 1.0)))
def early_concentration(ctx: ClaimContext):
    """C7: pooled f over early/mid stages > pooled f over the last stage (single "all blocks" row).

    Example:
        >>> early_concentration(ctx).rows[0].values["frac_early"]  # doctest: +SKIP
    """
    per_block, missing = [], []
    for bm in ctx.analysed():
        why = lacks(bm, "scale", "flip")
        if why:
            missing.append(f"{bm.block}: {why}")
            continue
        out = criterion_outcomes(bm, "p1")
        per_block.append((bm, _stage_key(ctx, bm), int(out.hit.sum()), out.hit.size))
    figures = {"scale_inv_fraction": fraction_figure(ctx, "p1")}
    if not per_block:
        r = row("all blocks", verdict=Verdict.NOT_APPLICABLE, note="; ".join(missing)[:400] or "no block analysed")
        return summarize(ctx, [r], figures=figures)
    last = min(key for _, key, _, _ in per_block)
    early = [(k, n) for _, key, k, n in per_block if key != last]
    late = [(k, n) for _, key, k, n in per_block if key == last]
    k1, n1, k2, n2 = sum(k for k, _ in early), sum(n for _, n in early), sum(k for k, _ in late), sum(n for _, n in late)
    values = {"frac_early": k1 / n1 if n1 else math.nan, "frac_last": k2 / n2 if n2 else math.nan,
              "n_early": n1, "n_last": n2, "n_blocks_last": len(late),
              **{f"frac:{bm.block}": (k / n if n else math.nan) for bm, _, k, n in per_block}}
    note = ""
    try:
        trend = cochran_armitage([k for *_, k, _ in per_block], [n for *_, n in per_block],
                                 [bm.index for bm, *_ in per_block], alternative="less")
        values.update(trend_z=trend.statistic, trend_p=trend.p_value, trend_slope=trend.effect)
    except DegenerateDataError as exc:
        note = f"trend: {exc}"
    if not early:
        r = row("all blocks", verdict=Verdict.NOT_APPLICABLE, values=values,
                note="all analysed blocks have the same spatial size (one stage): no early-vs-last contrast")
    elif min(n1, n2) < ctx.options.min_channels:
        r = row("all blocks", values=values, n=n1 + n2,
                note=f"defined channels early {n1} / last {n2} < {ctx.options.min_channels}")
    elif k1 + k2 == 0:
        r = row("all blocks", values=values, n=n1 + n2,
                note="no channel meets the P1 criterion in any block: nothing to concentrate")
    else:
        r = row("all blocks", fisher_exact_greater(k1, n1, k2, n2), values=values, note=note)
    keep = ("frac_early", "frac_last", "n_early", "n_last", "trend_z", "trend_p", "trend_slope")
    return summarize(ctx, [r], direction=1, figures=figures, values={k: values[k] for k in keep if k in values})
