"""C10 (scale-invariant channels and scale-robust recognition) and C11 (reference lesion magnitudes).

Both run the model again, so each spec has a ``prepare`` that builds its intervention request
from the measures: C10 a :class:`~resstream_assert.interventions.lesion.LesionRequest` (which
channels to lesion), C11 a :class:`~resstream_assert.interventions.reference.ReferenceRequest`.
The pipeline runs the request and the claim reads the numpy result as ``ctx.intervention``;
this module never runs a model.

C10, per pre-registered ablation block (spec C10, W9, W12): ``S*`` = the P2-criterion
channels (``SM_B > 0`` and mix band, P2 convention), **picked on one half of the probe
images** (a seeded split; the measures recomputed on that half) and **scored on the labeled
images of the other half**: picked and scored on the same images, S* would partly be chosen
for those images' noise. N random equal-size sets from the other channels, *without* the
papers' acceptance filter (W12c). With per-image correctness under each lesion,
``D(S, z) = acc_intact(z) - acc_S(z)`` and ``ΔD(S, z) = D(S, z) - D(S, 1)``. The primary
statistic is the least-squares slope of ΔD against zoom (with the default zooms (1, 2) it is
ΔD(2); ``zooms=1,1.25,1.5,2`` gives the four-zoom slope, which correlates 0.95-0.97 with it over the
random sets of the zoo model); its p-value is the rank of S*'s slope among the random sets' slopes,
``(1 + #{slope_r >= slope*}) / (N + 1)``, computed sequentially (Besag & Clifford 1991): the
random sets run two at a time and a block stops at the h-th set (default h = 2 of N = 40)
whose slope reaches S*'s, with ``p = h / n``. Since h / N = 0.05 >= alpha, a stopped block has
p >= 0.05 and every decision at alpha is the fixed N = 40 test's (tested); a significant
block still needs all N sets, a null block about ten. C10 needs every block, so a block that
stops ends the claim: the blocks after it are not run (inconclusive rows, "not run").
Holm across blocks. The effect is ``slope* - mean_r slope_r`` (accuracy per unit zoom) with a
paired bootstrap CI over the scored images. Row values beside the exact p: the t-prediction
p ``(s* - mean) / (sd sqrt(1 + 1/N))`` on N - 1 df; S*'s baseline damage at zoom 1 against the
random sets' (``p_baseline_damage``: the confound the unfiltered random sets leave open, named
in the row's note when significant) and the excess slope adjusted for it by regression on the
random sets (``excess_slope_adjusted``, ``p_adjusted``); per-zoom p's, the bootstrap CI of the
ΔD gap at the largest zoom, the anti set (``SM_B < 0`` in the band), a placebo (a random set in
place of S*) and exact McNemar tests of S* vs each random set. Zooms are true zoom factors
(centre crop of side H/z, resized back), not the papers' ``s`` (crop fraction 2 - s, W12h):
their s = 1.5 is our zoom 2.

Options (``--resstream-lesion KEY=VALUE``, read by
:class:`~resstream_assert.interventions.lesion.LesionOptions`): ``blocks``, ``zooms``,
``n_random``, ``batch_size``, ``min_selected``, ``min_images``, ``max_images``, ``sequential``
(h; 0 runs all N sets).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Mapping

import numpy as np

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, not_run, register, row, split_halves, summarize
from resstream_assert.claims.lesion_stats import SlopeExceedances, delta_d_slopes, lesion_test
from resstream_assert.interventions.lesion import BlockPlan, LesionOptions, LesionRequest, default_ablation_blocks
from resstream_assert.interventions.reference import ReferenceRequest
from resstream_assert.measures import MeasureOptions, block_measures, p2_anti, p2_selected
from resstream_assert.paper import IMAGENET_VAL_IMAGES, INTACT_TOP1, LESION_TOP1
from resstream_assert.results import BlockRow, ClaimResult, Verdict
from resstream_assert.stats import at_chance

__all__ = ["SlopeExceedances", "delta_d_slopes", "evaluate_c10", "evaluate_c11", "lesion_test", "plan_lesions",
           "reference_check"]

#: C11's tolerances (percentage points): the empty lesion, and each lesion's drop.
TOL_EMPTY, TOL_DROP = 0.05, 0.3


def _selection(ctx: ClaimContext, blocks: list) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
    """The ablation blocks' measures on half A of the probe images (S* is picked there), and the two halves
    (A: selection, B: the images the lesions are scored on); empty without the S and Sinv responses."""
    resp = ctx.responses
    if not all(v in resp for v in ("id", "S", "Sinv")):
        return {}, None, None
    select, score = split_halves(resp["id"].n_images, ctx.rng(-1, "split"))
    sub = {v: resp[v].subset(select) for v in ("id", "S", "Sinv")}
    opts = MeasureOptions(seed=ctx.seed, tuning=False)
    return {b.index: block_measures(b, sub, opts) for b in blocks}, select, score


def plan_lesions(ctx: ClaimContext) -> LesionRequest:
    """C10's request: per pre-registered block, S* (:func:`~resstream_assert.measures.p2_selected`) and the
    anti set (equal size to S* when larger) chosen on one half of the probe images, N random equal-size sets
    from the other channels, the lesions scored on the other half.

    Example:
        >>> plan_lesions(ctx).plans[0].random_sets.shape  # doctest: +SKIP
        (40, 14)
    """
    opts = LesionOptions.from_mapping(dict(ctx.options.lesion), seed=ctx.seed, min_images=ctx.options.min_images)
    names = opts.blocks or tuple(b.name for b in default_ablation_blocks(ctx.map))
    blocks = [ctx.map[name] for name in names]
    by_index, select, score = _selection(ctx, blocks)
    plans = []
    for block in blocks:
        bm = by_index.get(block.index)
        empty = np.zeros(0, np.int64)
        if bm is None or "sm_b" not in bm.scale:
            plans.append(BlockPlan(block.name, block.index, block.channels, empty, empty, np.zeros((0, 0), np.int64),
                                   note="no SM_B (needs the S and Sinv variants)"))
            continue
        sel, anti = np.flatnonzero(p2_selected(bm)), np.flatnonzero(p2_anti(bm))
        pool = np.setdiff1d(np.arange(block.channels), sel)
        k = len(sel)
        rng = np.random.default_rng([opts.seed, zlib.crc32(b"C10"), block.index + 1])
        rand = np.stack([np.sort(rng.choice(pool, k, replace=False)) for _ in range(opts.n_random)]) \
            if 0 < k <= len(pool) else np.zeros((0, k), np.int64)
        if len(anti) > k:  # equal size to S*, so the comparison with the random sets is fair
            anti = np.sort(rng.choice(anti, k, replace=False))
        note = (f"{k} selected channels < {opts.min_selected}" if k < opts.min_selected else
                f"only {len(pool)} non-selected channels for random sets of {k}" if k > len(pool) else "")
        plans.append(BlockPlan(block.name, block.index, block.channels, sel, anti, rand, note))
    stop = SlopeExceedances(opts.sequential) if opts.sequential else None
    return LesionRequest(opts, tuple(plans), stop, score, select, _max_stopped(ctx, opts, plans))


def _max_stopped(ctx: ClaimContext, opts: LesionOptions, plans: list) -> int | None:
    """How many blocks may stop early before C10 can no longer hold (``None``: run them all).

    A block stopped at its h-th exceedance has p = h / n >= h / N; with h / N >= alpha it fails whatever
    the others do, so once more blocks have stopped than the claim may lose, its verdict is fixed.
    """
    if not opts.sequential or opts.sequential / opts.n_random < ctx.options.alpha:
        return None
    runnable = sum(not p.note for p in plans)
    mostly = ctx.options.mostly if ctx.options.mostly is not None else ctx.claim.mostly
    return max(0, runnable - max(1, math.ceil(mostly * runnable)))


@register("C10", "Ablating scale-invariant channels disproportionately harms scale-robust recognition (tentative)",
          "P2", "S* picked on half of the probe images, lesions scored on the other half: slope of ΔD(S*, zoom) "
          "ranked among N random equal-size mean-ablations (Besag-Clifford sequential, h = 2 of N = 40); effect = "
          "S*'s excess slope with a paired image-bootstrap CI; Holm across blocks",
          needs=("id", "S", "Sinv"), mostly=1.0, gate=False, prepare=plan_lesions,
          boundary=Boundary(0.0, +1, "excess slope of S* over random sets", "images"))
def evaluate_c10(ctx: ClaimContext) -> ClaimResult:
    """C10 on the lesion data in ``ctx.intervention`` (see module docstring); not applicable without it.

    Example:
        >>> evaluate_c10(ctx).verdict  # doctest: +SKIP
        <Verdict.HOLDS: 'holds'>
    """
    data = ctx.intervention
    if data is None:
        return not_run(ctx, Verdict.NOT_APPLICABLE,
                       "no lesion data: C10 runs the model with lesions (torch backend, labeled probe)")
    if data.status != "ok":
        return not_run(ctx, Verdict(data.status), data.reason)
    chance = at_chance(data.intact[0], data.labels) if data.intact is not None else ""
    if chance:
        return not_run(ctx, Verdict.NOT_APPLICABLE, chance)
    rows: list[BlockRow] = []
    panels: list = []
    split = {"n_images_selection": len(data.select_rows) if data.select_rows is not None else math.nan}
    for bl in data.blocks:
        base = {"n_selected": len(bl.selected), "n_anti": len(bl.anti), "channels": bl.channels}
        if bl.note or bl.correct_selected is None:
            rows.append(row(bl.block, verdict=Verdict.INCONCLUSIVE, note=bl.note or "not run", values=base))
            continue
        intact = bl.correct_intact if bl.correct_intact is not None else data.intact
        test, values, fig = lesion_test(data.zooms, intact, bl.correct_selected, bl.correct_random, bl.correct_anti,
                                        rng=ctx.rng(bl.index, "bootstrap"), n_boot=ctx.options.n_boot,
                                        n_max=len(bl.random_sets), sequential=data.sequential)
        ran = len(bl.correct_random)
        stopped = f" of {len(bl.random_sets)} (sequential, h={data.sequential})" if ran < len(bl.random_sets) else ""
        confound = (f"; S* damages more at zoom 1 than {1 - values['p_baseline_damage']:.0%} of the random sets "
                    "(baseline damage not matched: see excess_slope_adjusted)"
                    if values["p_baseline_damage"] < ctx.options.alpha else "")
        rows.append(row(bl.block, test, values={**base, **values, **split},
                        note=f"|S*|={len(bl.selected)}, N={ran}{stopped}{confound}"))
        panels.append({"label": bl.block, **fig, "selected": bl.selected.tolist()})
    if not rows:
        return not_run(ctx, Verdict.INCONCLUSIVE, "no ablation block")
    figure = {"type": "lines", "title": "Extra damage under zoom: scale-invariant lesion vs random lesions",
              "xlabel": "zoom factor", "ylabel": "ΔD(zoom) = D(zoom) − D(1), accuracy", "panels": panels}
    return summarize(ctx, rows, direction=1, figures={"lesion_zoom_curves": figure},
                     values={"n_random": data.n_random, "seed": data.seed},
                     thresholds={"n_random": data.n_random})


def reference_check(n_images: int, acc_empty: float, acc_lesion: Mapping[str, float]) -> list[dict]:
    """C11's comparisons: the empty lesion within ±0.05 pp of 69.758, each drop within ±0.3 pp of P2's.

    Accuracies are fractions; returned numbers are percentage points.

    Example:
        >>> [c["ok"] for c in reference_check(50000, 0.69758, {"layer3.1": 0.635})]
        [True, True]
    """
    se = lambda a: 100 * math.sqrt(max(a * (1 - a), 0.0) / max(n_images, 1))  # noqa: E731
    out: list[dict[str, Any]] = [{"name": "empty lesion", "measured": 100 * acc_empty, "reference": INTACT_TOP1,
                                  "tolerance": TOL_EMPTY, "se": se(acc_empty)}]
    for name, acc in acc_lesion.items():
        ref = INTACT_TOP1 - LESION_TOP1[name]
        out.append({"name": f"{name} drop", "measured": 100 * (acc_empty - acc), "reference": ref,
                    "tolerance": TOL_DROP, "se": se(acc), "acc_lesion": 100 * acc})
    for c in out:
        c["ok"] = abs(c["measured"] - c["reference"]) <= c["tolerance"] + 1e-9
    return out


@register("C11", "Mean-ablating ~18% of a block's channels costs ~6 pp of top-1 at s = 1 (reference magnitude)",
          "P2 (code constants)", "absolute tolerance on ImageNet-val top-1: empty lesion ±0.05 pp, drops ±0.3 pp",
          needs=("id",), mostly=1.0, prepare=lambda ctx: ReferenceRequest())
def evaluate_c11(ctx: ClaimContext) -> ClaimResult:
    """C11: only for torchvision resnet18 (ImageNet weights) on a labeled ImageNet-val folder.

    Example:
        >>> evaluate_c11(ctx).verdict  # doctest: +SKIP
        <Verdict.NOT_APPLICABLE: 'not_applicable'>
    """
    ref = ctx.intervention
    if ref is None or ref.reason:
        return not_run(ctx, Verdict.NOT_APPLICABLE, ref.reason if ref is not None else "no lesion data")
    checks = reference_check(ref.n_images, ref.acc_empty, ref.acc_lesion)
    rows = []
    for c in checks:
        diff, half = c["measured"] - c["reference"], 1.96 * c["se"]
        extra = {"acc_lesion": c["acc_lesion"]} if "acc_lesion" in c else {}
        rows.append(BlockRow(c["name"], Verdict.HOLDS if c["ok"] else Verdict.FAILS, c["measured"], math.nan,
                             math.nan, diff, diff - half, diff + half, ref.n_images, note=f"±{c['tolerance']} pp",
                             values={"reference": c["reference"], **extra}))
    if ref.n_images < IMAGENET_VAL_IMAGES:
        verdict = Verdict.INCONCLUSIVE
        reason = (f"{ref.n_images} images < the {IMAGENET_VAL_IMAGES} of ImageNet-val the reference numbers were measured on "
                  "(sampling error exceeds the tolerance)")
    else:
        bad = [c["name"] for c in checks if not c["ok"]]
        verdict = Verdict.FAILS if bad else Verdict.HOLDS
        reason = f"outside tolerance: {', '.join(bad)}" if bad else "all reference accuracies within tolerance"
    worst = max(checks, key=lambda c: abs(c["measured"] - c["reference"]) - c["tolerance"])
    spec = ctx.claim
    return ClaimResult(claim=spec.id, title=spec.title, source=spec.source,
                       verdict=verdict, statistic=worst["measured"], p_value=math.nan, p_adjusted=math.nan,
                       effect=worst["measured"] - worst["reference"], ci_low=math.nan, ci_high=math.nan,
                       n=ref.n_images, rows=tuple(rows), seed=ctx.seed, model=ctx.model, backend=ctx.backend,
                       method="absolute tolerance", reason=reason,
                       thresholds={"tol_empty_pp": TOL_EMPTY, "tol_drop_pp": TOL_DROP}, gate=spec.gate)
