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
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, not_run, register, row, split_halves, summarize
from resstream_assert.interventions.lesion import BlockPlan, LesionOptions, LesionRequest, default_ablation_blocks
from resstream_assert.interventions.reference import ReferenceRequest
from resstream_assert.measures import MeasureOptions, block_measures, p2_anti, p2_selected
from resstream_assert.paper import IMAGENET_VAL_IMAGES, INTACT_TOP1, LESION_TOP1
from resstream_assert.results import BlockRow, ClaimResult, TestResult, Verdict
from resstream_assert.stats import at_chance, empirical_pvalue, sequential_pvalue, trend_slope

#: C11's tolerances (percentage points): the empty lesion, and each lesion's drop.
TOL_EMPTY, TOL_DROP = 0.05, 0.3


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.arange(n_boot)[:, None], idx), 1.0)
    return w


def delta_d_slopes(zooms, intact: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Per set (rows of ``sets`` (m, Z, n)), the least-squares slope of ΔD(S, z) = D(S, z) - D(S, 1) vs zoom.

    Example:
        >>> delta_d_slopes((1, 2), np.ones((2, 4), bool), np.array([[[1, 1, 1, 1], [1, 0, 0, 1]]], bool)).tolist()
        [0.5]
    """
    d = intact.mean(-1)[None] - sets.astype(np.float64).mean(-1)
    return np.asarray(trend_slope(np.asarray(zooms, float), d - d[:, :1]))  # 2-D in: one slope per row


@dataclass(frozen=True)
class SlopeExceedances:
    """C10's sequential stop: ``h`` random sets whose ΔD slope reaches S*'s (Besag-Clifford).

    The lesion intervention calls it after each group of random sets; hashable, so it is part
    of the request's key.

    Example:
        >>> SlopeExceedances(2)((1, 2), np.ones((2, 4), bool), np.ones((2, 4), bool), np.ones((3, 2, 4), bool))
        True
    """

    h: int

    @staticmethod
    def exceed(zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray) -> np.ndarray:
        """Per random set, in run order: is its slope as large as S*'s?"""
        slopes = delta_d_slopes(zooms, intact, np.concatenate([selected[None], random]))
        return slopes[1:] >= slopes[0]

    def __call__(self, zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray) -> bool:
        return int(self.exceed(zooms, intact, selected, random).sum()) >= self.h


def lesion_test(zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray, anti: np.ndarray | None = None,
                *, rng: np.random.Generator | int = 0, n_boot: int = 1000, n_max: int | None = None,
                sequential: int = 0) -> tuple[TestResult, dict, dict]:
    """C10's test on per-image correctness: ``intact`` / ``selected`` / ``anti`` (Z, n), ``random`` (N, Z, n).

    Returns ``(test, values, figure)``; ``zooms[0]`` must be 1. ``n_boot=0`` skips the
    bootstrap (NaN CIs). With ``sequential=h`` the random sets were run under Besag and
    Clifford's sequential test (stop at the h-th set whose slope reaches S*'s) out of
    ``n_max`` planned: the p-value is :func:`~resstream_assert.stats.sequential_pvalue`; the
    secondary values use every set that ran.

    Example:
        >>> r = np.random.default_rng(0).random((20, 3, 100)) < 0.8
        >>> t, v, _ = lesion_test((1, 1.5, 2), np.ones((3, 100), bool), r[0], r[1:], n_boot=0)
        >>> 0 < t.p_value <= 1
        True
    """
    z = np.asarray(zooms, float)
    if z[0] != 1.0:
        raise ValueError(f"zooms must start at 1.0 (ΔD is measured from the unzoomed accuracy), got {tuple(z)}")
    n_rand, n_img = random.shape[0], intact.shape[-1]
    if n_rand < 2:
        raise ValueError(f"need at least 2 random sets, got {n_rand}")
    stack = [selected[None], random] + ([anti[None]] if anti is not None else [])
    sets = np.concatenate(stack).astype(np.float64)  # (S, Z, n): row 0 S*, 1..N random, last anti
    d = intact.mean(-1)[None] - sets.mean(-1)
    dd = d - d[:, :1]
    slopes = delta_d_slopes(z, intact, sets)
    s_sel, s_rand = float(slopes[0]), slopes[1:1 + n_rand]
    if sequential:
        p, _ = sequential_pvalue(s_rand >= s_sel, n_max or n_rand, sequential)
    else:
        p = empirical_pvalue(s_sel, s_rand, alternative="greater")
    values = _lesion_values(z, intact, sets, dd, s_rand, n_img)
    if anti is not None:
        values.update(anti_slope=float(slopes[-1]), anti_excess_slope=float(slopes[-1] - s_rand.mean()),
                      p_anti=empirical_pvalue(float(slopes[-1]), s_rand, alternative="greater"))
    values["mcnemar_frac_sig_max_zoom"] = _mcnemar_fraction(selected, random)
    lo = hi = gap_lo = gap_hi = math.nan
    if n_boot > 0:
        lo, hi, gap_lo, gap_hi = _bootstrap_intervals(z, intact, sets, n_rand, n_boot, np.random.default_rng(rng))
    values.update(gap_max_zoom_ci_low=float(gap_lo), gap_max_zoom_ci_high=float(gap_hi))
    values.update(_prediction_and_confound(s_sel, s_rand, d[0, 0], d[1:1 + n_rand, 0]))
    test = TestResult(s_sel, p, s_sel - float(s_rand.mean()), float(lo), float(hi), n_img,
                      "rank of the ΔD-vs-zoom slope among random equal-size lesions", "greater", "excess_slope",
                      n_rand, values={})
    return test, values, _lesion_figure(z, intact, sets, dd, n_rand)


def _lesion_values(z: np.ndarray, intact: np.ndarray, sets: np.ndarray, dd: np.ndarray, s_rand: np.ndarray,
                   n_img: int) -> dict[str, float]:
    """C10's row values beside the test: the random sets' mean slope, the placebo p, and per zoom the
    accuracies, S*'s ΔD rank p and its excess over the random sets' mean ΔD.

    Example:
        >>> sets = np.ones((3, 2, 4))
        >>> v = _lesion_values(np.array([1.0, 2.0]), np.ones((2, 4)), sets, np.zeros((3, 2)), np.zeros(2), 4)
        >>> v["n_random"], v["acc_intact_z2"], v["excess_dD_z2"]
        (2, 1.0, 0.0)
    """
    n_rand = len(s_rand)
    gap = dd[0] - dd[1:1 + n_rand].mean(0)
    values: dict[str, float] = {"n_random": n_rand, "n_images": n_img, "slope_random_mean": float(s_rand.mean()),
                                "p_placebo": empirical_pvalue(float(s_rand[0]), s_rand[1:], alternative="greater"),
                                "gap_max_zoom": float(gap[-1])}
    for j, zz in enumerate(z):
        key = f"{zz:g}"
        values[f"acc_intact_z{key}"] = float(intact[j].mean())
        values[f"acc_selected_z{key}"] = float(sets[0, j].mean())
        values[f"acc_random_mean_z{key}"] = float(sets[1:1 + n_rand, j].mean())
        if j:
            values[f"p_zoom{key}"] = empirical_pvalue(float(dd[0, j]), dd[1:1 + n_rand, j], alternative="greater")
            values[f"excess_dD_z{key}"] = float(gap[j])
    return values


def _mcnemar_fraction(selected: np.ndarray, random: np.ndarray) -> float:
    """Secondary (spec C10): the fraction of random sets from which S* differs by an exact one-sided McNemar
    test (S* worse) at p < 0.05, at the largest zoom.

    Example:
        >>> _mcnemar_fraction(np.zeros((1, 20), bool), np.ones((3, 1, 20), bool))
        1.0
    """
    from scipy.stats import binom

    b = (~selected[-1] & random[:, -1]).sum(-1)
    c = (selected[-1] & ~random[:, -1]).sum(-1)
    p_mc = np.where(b + c > 0, binom.sf(b - 1, np.maximum(b + c, 1), 0.5), 1.0)
    return float(np.mean(p_mc < 0.05))


def _bootstrap_intervals(z: np.ndarray, intact: np.ndarray, sets: np.ndarray, n_rand: int, n_boot: int,
                         gen: np.random.Generator) -> tuple[float, float, float, float]:
    """Paired bootstrap over the scored images: 95% intervals of S*'s excess slope and of its ΔD gap at the
    largest zoom, ``(lo, hi, gap_lo, gap_hi)``."""
    n_img = intact.shape[-1]
    w = _resample_counts(n_img, n_boot, gen)
    acc_b = (sets.reshape(-1, n_img) @ w.T / n_img).reshape(sets.shape[0], len(z), n_boot)
    int_b = intact.astype(np.float64) @ w.T / n_img  # (Z, B)
    dd_b = int_b[None] - acc_b
    dd_b = dd_b - dd_b[:, :1]
    sl_b = np.asarray(trend_slope(z, dd_b.transpose(0, 2, 1).reshape(-1, len(z)))).reshape(sets.shape[0], n_boot)
    excess = sl_b[0] - sl_b[1:1 + n_rand].mean(0)
    gaps = dd_b[0, -1] - dd_b[1:1 + n_rand, -1].mean(0)
    lo, hi = np.percentile(excess, [2.5, 97.5])
    gap_lo, gap_hi = np.percentile(gaps, [2.5, 97.5])
    return lo, hi, gap_lo, gap_hi


def _lesion_figure(z: np.ndarray, intact: np.ndarray, sets: np.ndarray, dd: np.ndarray, n_rand: int) -> dict:
    """One panel of the shared "lines" figure contract: extra damage under zoom, S* vs the random band."""
    return {"x": z.tolist(), "series": {"scale-invariant set": dd[0].tolist(),
                                       "random sets (mean)": dd[1:1 + n_rand].mean(0).tolist()},
            "bands": {"random sets (mean)": {"low": np.percentile(dd[1:1 + n_rand], 5, axis=0).tolist(),
                                             "high": np.percentile(dd[1:1 + n_rand], 95, axis=0).tolist()}},
            "acc_intact": intact.mean(-1).tolist(), "acc_selected": sets[0].mean(-1).tolist(),
            "acc_random_mean": sets[1:1 + n_rand].mean(-1).mean(0).tolist()}


def _prediction_and_confound(s_sel: float, s_rand: np.ndarray, d_sel: float, d_rand: np.ndarray) -> dict:
    """Beside the exact rank p: the t-prediction p of S*'s slope, and S*'s baseline damage (zoom 1) against the
    random sets' (the confound the unfiltered random sets leave open), with the slope excess adjusted for it."""
    from scipy.stats import t as student_t

    n = s_rand.size
    out = {"baseline_damage_selected": float(d_sel), "baseline_damage_random_mean": float(d_rand.mean()),
           "p_baseline_damage": empirical_pvalue(float(d_sel), d_rand, alternative="greater"),
           "p_t_prediction": math.nan, "excess_slope_adjusted": math.nan, "p_adjusted": math.nan}
    sd = float(s_rand.std(ddof=1)) if n > 1 else 0.0
    if sd > 0:  # (s* - mean) / (sd sqrt(1 + 1/N)) on N - 1 df: S* as one more draw of the random sets' normal
        out["p_t_prediction"] = float(student_t.sf((s_sel - s_rand.mean()) / (sd * math.sqrt(1 + 1 / n)), n - 1))
    if n > 2 and np.ptp(d_rand) > 0:  # regression on baseline damage (spec C10: matching by D(S_r, 1))
        b, a = np.polyfit(d_rand, s_rand, 1)
        resid = s_rand - (a + b * d_rand)
        adj = float(s_sel - (a + b * d_sel))
        out.update(excess_slope_adjusted=adj, p_adjusted=empirical_pvalue(adj, resid, alternative="greater"))
    return out


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
    names = opts.blocks or tuple(b.name for b in default_ablation_blocks(ctx.rmap))
    blocks = [ctx.rmap[name] for name in names]
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
