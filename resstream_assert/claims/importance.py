"""X3 and X4 (ours): which kind of channel (skip, mix, overwrite) matters most to the model's output?

X3 (intervention): the gain of single channels (up to ``x3_channels`` per category and
block, seeded) is scaled by each of ``x3_factors`` (default 0.5) with beta held, and the
output compared with the unmodified model's on the probe images: the mean KL divergence
of the softmax outputs, per unit change of gain (``KL / |f - 1|``), and, where the probe's
labels fit the model, the top-1 accuracy lost per unit change of gain.

X4 (attribution, the seed's third next check): captum's layer integrated gradients (or
layer conductance) of the predicted class to every channel of ``resid_sum``; a channel's
importance is the mean over images of ``|sum over positions of its attribution|``.

Both test per block whether the measure differs between the categories (P1 M) with a
Kruskal-Wallis test (permutation p, effect epsilon-squared with a bootstrap CI), Holm
across blocks; the per-category medians, the category that matters most and a
Mann-Whitney overwrite-vs-skip comparison are row values. Report-only and opt-in: they
cost minutes on a CPU (``--resstream-claims X3,X4`` runs them).
"""

from __future__ import annotations

import math

import numpy as np

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, not_run, register, row, summarize
from resstream_assert.claims.gain_scaling import intervention_options
from resstream_assert.errors import DegenerateDataError
from resstream_assert.interventions.attribution import AttributionRequest
from resstream_assert.interventions.downstream import DownstreamRequest
from resstream_assert.interventions.settings import sample_channels
from resstream_assert.measures import MIX, OVERWRITE, SKIP
from resstream_assert.results import BlockRow, Verdict
from resstream_assert.stats import kruskal_wallis, mann_whitney

MIN_PER_CATEGORY = 3  # a category with fewer channels is left out of the comparison
ORDER = (("skip", SKIP), ("mix", MIX), ("overwrite", OVERWRITE))


def plan_downstream(ctx: ClaimContext) -> DownstreamRequest:
    """X3's request: per analysed block, up to ``x3_channels`` channels of each category (seeded).

    Example:
        >>> plan_downstream(ctx).plans[0][1]  # doctest: +SKIP
        array([ 2,  7, 19, ...])
    """
    opts = intervention_options(ctx)
    plans = []
    for bm in ctx.analysed():
        cat = bm.category("p1")
        chans = []
        for name, code in ORDER:
            members = np.flatnonzero(cat == code)
            pick = sample_channels(len(members), opts.x3_channels, opts.seed, bm.index, stream=f"X3/{name}")
            chans.append(members[pick])
        plans.append((bm.index, np.sort(np.concatenate(chans)).astype(np.int64)))
    return DownstreamRequest(opts, tuple(plans))


def softmax_kl(base: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """Mean over images of KL(softmax(base) || softmax(edited)); ``edited`` may have leading axes.

    Example:
        >>> z = np.array([[1.0, 2.0, 3.0]])
        >>> float(softmax_kl(z, z)), bool(softmax_kl(z, z[:, ::-1]) > 0)
        (0.0, True)
    """
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = log_softmax(base.astype(np.float64)), log_softmax(edited.astype(np.float64))
    return np.maximum((np.exp(lp) * (lp - lq)).sum(-1), 0.0).mean(-1)


def category_test(ctx: ClaimContext, block: str, values: np.ndarray, cat: np.ndarray, what: str,
                  extra: dict | None = None) -> BlockRow:
    """Kruskal-Wallis of ``values`` across the categories ``cat`` (P1 codes) of the same channels, as a row."""
    groups = {name: values[(cat == code) & ~np.isnan(values)] for name, code in ORDER}
    info = {f"median_{k}": float(np.median(v)) if v.size else math.nan for k, v in groups.items()}
    info.update({f"n_{k}": v.size for k, v in groups.items()})
    info.update(extra or {})
    used = {k: v for k, v in groups.items() if v.size >= MIN_PER_CATEGORY}
    if len(used) < 2:
        return row(block, verdict=Verdict.INCONCLUSIVE, n=int(sum(v.size for v in groups.values())), values=info,
                   note=f"fewer than 2 categories with >= {MIN_PER_CATEGORY} channels "
                        f"({', '.join(f'{k} {v.size}' for k, v in groups.items())})")
    rng = ctx.rng(ctx.map[block].index if ctx.rmap is not None else 0)
    try:
        test = kruskal_wallis(used, rng=rng, n_resamples=ctx.options.n_resamples, n_boot=ctx.options.n_boot)
    except DegenerateDataError as exc:
        return row(block, verdict=Verdict.INCONCLUSIVE, note=str(exc), values=info)
    if "skip" in used and "overwrite" in used:
        mw = mann_whitney(used["overwrite"], used["skip"], alternative="two-sided", rng=rng, n_boot=0)
        info.update(rank_biserial_overwrite_vs_skip=mw.effect, p_overwrite_vs_skip=mw.p_value)
    most = max(used, key=lambda k: np.median(used[k]))
    return row(block, test, values=info, note=f"{most} channels matter most ({what}, median "
                                              f"{np.median(used[most]):.3g})")


@register("X3", "Which kind of channel matters most to the output when its gain changes (intervention)", "ours",
          "single-channel gain edits (beta held): KL of the output per unit change of gain; Kruskal-Wallis across "
          "skip/mix/overwrite channels (permutation p, epsilon-squared); Holm across blocks",
          gate=False, prepare=plan_downstream, opt_in=True,
          boundary=Boundary(0.01, +1, "epsilon-squared across categories", limits=(0.0, 1.0)))
def downstream_effect(ctx: ClaimContext):
    """X3 on the logits in ``ctx.intervention`` (see the module docstring).

    Example:
        >>> downstream_effect(ctx).rows[0].values["median_overwrite"]  # doctest: +SKIP
    """
    data = ctx.intervention
    if data is None:
        return not_run(ctx, Verdict.NOT_APPLICABLE, "no downstream data: X3 runs the model with edited gains")
    by_index = {bm.index: bm for bm in ctx.measures}
    unit = np.abs(np.asarray(data.factors, float) - 1.0)[:, None]  # (F, 1)
    labels = data.labels
    scored = not data.label_problem and bool((labels >= 0).all())
    acc_base = float((data.base_logits.argmax(-1) == labels).mean()) if scored else math.nan
    rows = []
    for bl in data.blocks:
        if bl.logits is None:
            rows.append(row(bl.block, verdict=Verdict.NOT_APPLICABLE, note=bl.note))
            continue
        cat = by_index[bl.index].category("p1")[bl.channels]
        kl = softmax_kl(data.base_logits, bl.logits)  # (F, E)
        sens = (kl / unit).mean(0)
        extra = {"acc_base": acc_base, "channels_edited": len(bl.channels)}
        if scored:
            acc = (bl.logits.argmax(-1) == labels).mean(-1)  # (F, E)
            drop = ((acc_base - acc) / unit).mean(0)
            extra.update({f"acc_drop_per_unit_{k}": float(np.median(drop[cat == c])) if np.any(cat == c) else math.nan
                          for k, c in ORDER})
        rows.append(category_test(ctx, bl.block, sens, cat, "KL per unit gain", extra))
    reason = "" if scored else f"accuracy not scored: {data.label_problem or 'unlabeled probe images'}"
    res = summarize(ctx, rows, direction=1, values={"factors": len(data.factors), "seconds": data.seconds},
                    thresholds={"min_per_category": MIN_PER_CATEGORY})
    return res.with_(reason=f"{res.reason}; {reason}" if reason else res.reason)


def plan_attribution(ctx: ClaimContext) -> AttributionRequest:
    """X4's request: every analysed block.

    Example:
        >>> plan_attribution(ctx).blocks  # doctest: +SKIP
        (1, 2, 3, 4, 5, 6, 7)
    """
    return AttributionRequest(intervention_options(ctx), tuple(bm.index for bm in ctx.analysed()))


@register("X4", "Output attribution to resid_sum channels differs between skip, mix and overwrite channels", "ours",
          "captum layer integrated gradients (or conductance) of the predicted class; importance = mean |channel "
          "attribution|; Kruskal-Wallis across categories (permutation p, epsilon-squared); Holm across blocks",
          gate=False, prepare=plan_attribution, opt_in=True,
          boundary=Boundary(0.01, +1, "epsilon-squared across categories", limits=(0.0, 1.0)))
def attribution_by_category(ctx: ClaimContext):
    """X4 on the attributions in ``ctx.intervention`` (see the module docstring).

    Example:
        >>> attribution_by_category(ctx).rows[0].values["median_skip"]  # doctest: +SKIP
    """
    data = ctx.intervention
    if data is None:
        return not_run(ctx, Verdict.NOT_APPLICABLE, "no attribution data: X4 runs captum on the model")
    if data.status != "ok":
        return not_run(ctx, Verdict(data.status), data.reason)
    by_index = {bm.index: bm for bm in ctx.measures}
    rows = []
    for bl in data.blocks:
        if bl.per_image is None:
            rows.append(row(bl.block, verdict=Verdict.NOT_APPLICABLE, note=bl.note))
            continue
        importance = np.abs(bl.per_image.astype(np.float64)).mean(0)
        extra = {"completeness_gap": bl.delta}
        rows.append(category_test(ctx, bl.block, importance, by_index[bl.index].category("p1"),
                                  f"mean |{data.method} attribution|", extra))
    return summarize(ctx, rows, direction=1, values={"n_images": data.n_images, "seconds": data.seconds},
                     thresholds={"min_per_category": MIN_PER_CATEGORY})

