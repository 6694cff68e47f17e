"""X1 and X2 (ours): does a smaller branch gain, or a larger shortcut, make a channel skip? (interventions)

The papers find that skip channels have a smaller branch gain (C3) and say this is a
correlation. X1 intervenes: the gain of each sampled channel's branch (BN gamma, or the
layer scale) is scaled by factors ``f`` (default 7 log-spaced, 0.25 ... 4), with beta held
(the primary test: only gamma changes) or scaled along, the block's sites are recaptured
and ``M_c`` (P1) is recomputed with the *unmodified* model's exemplars held fixed (so M
moves only through the responses). Per channel, Spearman's rho of ``M_c`` against ``log f``;
per block, an exact sign test that M rises as the gain falls (rho < 0) in more channels
than not, the effect being the net share ``(n_down - n_up) / (n_down + n_up)`` with a
Clopper-Pearson CI; Holm across blocks. Row values: the share of channels whose category
flips over the range (overwrite -> mix -> skip as the gain falls), the factor of the first
flip, the share moving against the direction, P2's M, and the other beta variant.

X2 scales the shortcut summand of each channel instead. M is homogeneous of degree 0 in
(skip, branch) for a positively homogeneous activation (ReLU, none), so scaling the
shortcut by ``g`` must move M exactly as scaling the whole branch (gamma and beta) by
``1/g``: the row values report how far the two are apart (``symmetry_max_dev``, in log M).

Both read the numpy result of :class:`~resstream_assert.interventions.scaling.ScalingRequest`
(one run for both claims). Intervention options: ``--resstream-intervention KEY=VALUE``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.stats import rankdata

from resstream_assert.capture.responses import Responses, site_key
from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, not_run, register, row, summarize
from resstream_assert.errors import DegenerateDataError
from resstream_assert.interventions.settings import InterventionOptions, sample_channels
from resstream_assert.interventions.scaling import ScalingRequest
from resstream_assert.measures import MIX, OVERWRITE, SKIP, MeasureOptions, block_exemplars, block_measures, categorize
from resstream_assert.results import BlockRow, Verdict
from resstream_assert.stats import sign_test

SITES = ("skip_out", "branch_out", "resid_sum", "resid_post")
FAITHFUL_REL = 1e-3  # the recapture at factor 1 must equal the capture to this relative tolerance


def intervention_options(ctx: ClaimContext) -> InterventionOptions:
    """The run's X1-X4 options (``--resstream-intervention``), seeded by the run's seed.

    Example:
        >>> intervention_options(ctx).factors  # doctest: +SKIP
        (0.25, 0.39685, 0.629961, 1.0, 1.587401, 2.519842, 4.0)
    """
    return InterventionOptions.from_mapping(dict(ctx.options.intervention), seed=ctx.seed)


def plan_scaling(ctx: ClaimContext) -> ScalingRequest:
    """X1's and X2's request: every analysed block, ``channels`` sampled channels each (all when fewer).

    Example:
        >>> plan_scaling(ctx).plans[0][1][:4]  # doctest: +SKIP
        array([ 0,  3,  5, 11])
    """
    opts = intervention_options(ctx)
    return ScalingRequest(opts, tuple((bm.index, sample_channels(bm.channels, opts.channels, opts.seed, bm.index))
                                      for bm in ctx.analysed()))


def mix_ratios(ctx: ClaimContext, block, chans: np.ndarray, n: int, edited: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(m_p1, m_p2)`` of the channels ``chans`` with ``edited`` sites replacing the captured ones.

    Exemplars come from the unmodified capture (first ``n`` images) and stay fixed.
    """
    base = ctx.responses["id"]
    sub = replace(block, channels=len(chans), branch_gain=None, conv_magnitude=None)
    key = lambda s: site_key(block.index, s)  # noqa: E731
    orig = {key(s): base.get(block, s)[:n][:, chans] for s in SITES}
    fixed = block_exemplars(sub, {"id": Responses("id", orig, {}, None)})
    center = {**orig, **{key(s): v for s, v in edited.items()}}
    bm = block_measures(sub, {"id": Responses("id", center, {}, None)}, MeasureOptions(seed=ctx.seed, tuning=False),
                        exemplars=fixed)
    return bm.m_p1, bm.m_p2


def dose_response(m: np.ndarray, factors) -> np.ndarray:
    """Spearman rho of ``M_c`` vs ``log f`` per channel (``m`` is ``(K, C)``); NaN with < 3 defined or constant M.

    Example:
        >>> dose_response(np.array([[4., 1.], [2., 1.], [1., 1.]]), (0.5, 1, 2)).tolist()
        [-1.0, nan]
    """
    x = np.log(np.asarray(factors, float))
    out = np.full(m.shape[1], np.nan)
    for c in range(m.shape[1]):
        ok = ~np.isnan(m[:, c])
        if ok.sum() < 3:
            continue
        rx, ry = rankdata(x[ok]), rankdata(m[ok, c])
        if np.ptp(ry) > 0:
            out[c] = round(float(np.corrcoef(rx, ry)[0, 1]), 12)  # -0.9999999999999999 is -1
    return out


def flips(cat: np.ndarray, factors) -> dict[str, np.ndarray]:
    """Per channel: category changes over factors (``cat`` is ``(K, C)``, factors ascending, 1 among them).

    ``down``: the first factor below 1 where the channel is more skip-like than at 1 (NaN if none);
    ``up``: the first factor above 1 where it is more overwrite-like; ``against``: whether the
    category ever rises with the gain (undefined categories are ignored).

    Example:
        >>> f = flips(np.array([[2], [1], [0]]), (0.5, 1, 2))
        >>> f["down"].tolist(), f["up"].tolist(), f["against"].tolist()
        ([0.5], [2.0], [False])
    """
    fac = np.asarray(factors, float)
    i1 = int(np.argmin(np.abs(fac - 1.0)))
    k, c = cat.shape
    down, up = np.full(c, np.nan), np.full(c, np.nan)
    against, changed = np.zeros(c, bool), np.zeros(c, bool)
    for j in range(c):
        col = cat[:, j]
        ok = col >= 0
        changed[j] = len(set(col[ok].tolist())) > 1
        defined = col[ok]
        against[j] = bool(np.any(np.diff(defined) > 0))
        if col[i1] < 0:
            continue
        below = [i for i in range(i1 - 1, -1, -1) if col[i] > col[i1]]
        above = [i for i in range(i1 + 1, k) if 0 <= col[i] < col[i1]]
        down[j] = fac[below[0]] if below else np.nan
        up[j] = fac[above[0]] if above else np.nan
    return {"down": down, "up": up, "against": against, "changed": changed}


def net_share(rho: np.ndarray, sign: int):
    """Sign test that ``sign * rho > 0`` in most channels; effect = net share in [-1, 1] with its CI."""
    t = sign_test(sign * rho[~np.isnan(rho)], alternative="greater")
    return replace(t, effect=2 * t.effect - 1, ci_low=2 * t.ci_low - 1, ci_high=2 * t.ci_high - 1,
                   effect_name="net_share_of_channels")


def _base_checks(bl, sites_present: bool):
    """A not-applicable row for block ``bl`` when its edit did not run (the reason is in its notes), or None."""
    if not sites_present:
        why = "; ".join(f"{k}: {v}" for k, v in bl.notes.items()) or "no edit ran"
        return row(bl.block, verdict=Verdict.NOT_APPLICABLE, note=why)
    return None


def _faithful(ctx: ClaimContext, data, bl, edited: dict) -> str:
    """Why the recapture at factor 1 differs from the capture ('' when it agrees)."""
    i1 = int(np.argmin(np.abs(np.asarray(data.factors) - 1.0)))
    site = "resid_sum"
    ref = ctx.responses["id"].get(bl.index, site)[:data.n_images][:, bl.channels]
    dev = float(np.abs(edited[site][i1] - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) + 1e-12 if ref.size else 1.0
    return "" if dev <= FAITHFUL_REL * scale else (f"the recapture at factor 1 differs from the capture by "
                                                   f"{dev:.3g} (scale {scale:.3g}): not faithful")


def _category_shares(cat: np.ndarray) -> dict[str, list[float]]:
    defined = np.maximum((cat >= 0).sum(1), 1)
    return {name: ((cat == code).sum(1) / defined).tolist() for name, code in
            (("skip", SKIP), ("mix", MIX), ("overwrite", OVERWRITE))}


def _gain_m(ctx, data, bl, variant):
    block = ctx.map[bl.index]
    sites = bl.gain[variant]
    ms = [mix_ratios(ctx, block, bl.channels, data.n_images, {s: sites[s][k] for s in sites})
          for k in range(len(data.factors))]
    return np.stack([m[0] for m in ms]), np.stack([m[1] for m in ms])


@register("X1", "A smaller branch gain makes a channel more skip-like (gain dose-response, intervention)", "ours",
          "per channel Spearman of M (P1, exemplars fixed) vs log gain factor, gamma scaled with beta held; exact sign "
          "test across channels that M rises as the gain falls; effect: net share of channels; Holm across blocks",
          prepare=plan_scaling,
          boundary=Boundary(0.5, +1, "net share of sampled channels moving with the dose", "sampled channels",
                            limits=(-1.0, 1.0)))
def gain_dose_response(ctx: ClaimContext):
    """X1 on the recaptured sites in ``ctx.intervention`` (see the module docstring).

    Example:
        >>> gain_dose_response(ctx).rows[0].values["frac_flip"]  # doctest: +SKIP
    """
    data = ctx.intervention
    if data is None:
        return not_run(ctx, Verdict.NOT_APPLICABLE, "no scaling data: X1 runs the model with edited gains")
    primary = "held" if "held" in data.variants else data.variants[0]
    rows: list[BlockRow] = []
    panels = []
    for bl in data.blocks:
        variant = primary if primary in bl.gain else next(iter(bl.gain), None)
        bad = _base_checks(bl, variant is not None)
        if bad is None:
            why = _faithful(ctx, data, bl, bl.gain[variant])
            bad = row(bl.block, verdict=Verdict.INCONCLUSIVE, note=why) if why else None
        if bad is not None:
            rows.append(bad)
            continue
        m1, m2 = _gain_m(ctx, data, bl, variant)
        rho = dose_response(m1, data.factors)
        cat = categorize(m1)
        fl = flips(cat, data.factors)
        n_def = int((~np.isnan(rho)).sum())
        values = {"channels_sampled": len(bl.channels), "channels_defined": n_def,
                  "channels_constant": int(np.all(np.isnan(m1) | (m1 == m1[:1]), axis=0).sum()),
                  "median_rho": float(np.nanmedian(rho)) if n_def else math.nan,
                  "frac_flip": float(fl["changed"].mean()), "frac_flip_to_skip": float((~np.isnan(fl["down"])).mean()),
                  "frac_flip_to_overwrite": float((~np.isnan(fl["up"])).mean()),
                  "frac_against": float(fl["against"].mean()),
                  "median_flip_factor_down": float(np.nanmedian(fl["down"])) if np.any(~np.isnan(fl["down"])) else math.nan,
                  "median_flip_factor_up": float(np.nanmedian(fl["up"])) if np.any(~np.isnan(fl["up"])) else math.nan}
        values.update(_secondary(ctx, data, bl, m2, primary))
        panels.append({"label": bl.block, "x": list(data.factors), "series": _category_shares(cat),
                       "flip_factor_down": fl["down"].tolist(), "flip_factor_up": fl["up"].tolist(),
                       "channels": bl.channels.tolist()})
        few = ctx.too_few(_Named(bl.block), n_def, what="channels whose M varies",
                          values=values, suffix=_why_constant(values))
        if few is not None:
            rows.append(few)
            continue
        try:
            test = net_share(rho, -1)
        except DegenerateDataError as exc:
            rows.append(row(bl.block, verdict=Verdict.INCONCLUSIVE, note=str(exc), values=values))
            continue
        note = f"beta {variant}; {values['frac_flip']:.0%} of channels change category"
        if variant != primary:
            note += f" ({primary}: {bl.notes.get(primary, 'not run')})"
        rows.append(row(bl.block, test, values=values, note=note))
    figure = {"type": "lines", "title": "X1: category shares as the branch gain is scaled (beta held)",
              "xlabel": "gain factor f", "ylabel": "share of sampled channels", "panels": panels}
    return summarize(ctx, rows, direction=1, figures={"gain_dose_response": figure},
                     values={"n_factors": len(data.factors), "n_images": data.n_images, "seconds": data.seconds},
                     thresholds={"min_factor": min(data.factors), "max_factor": max(data.factors)})


class _Named:
    """The one attribute :meth:`ClaimContext.too_few` reads from a block."""

    def __init__(self, block: str):
        self.block = block


def _why_constant(values: dict) -> str:
    if values["channels_constant"] and values["channels_constant"] >= values["channels_sampled"] - 2:
        return ("; M does not change with the edit (e.g. a silent branch: NC-id makes every channel pure skip at "
                "every factor)")
    return ""


def _secondary(ctx, data, bl, m2: np.ndarray, primary: str) -> dict[str, float]:
    """P2's M under the primary variant, and the other beta variant's P1 test, as row values."""
    out: dict[str, float] = {}
    for name, m in [("p2", m2)] + [(f"beta_{v}", _gain_m(ctx, data, bl, v)[0]) for v in bl.gain if v != primary]:
        rho = dose_response(m, data.factors)
        try:
            t = net_share(rho, -1)
            out.update({f"effect_{name}": t.effect, f"p_{name}": t.p_value})
        except DegenerateDataError:
            out.update({f"effect_{name}": math.nan, f"p_{name}": math.nan})
    return out


@register("X2", "A larger shortcut makes a channel more skip-like, mirroring X1 (shortcut scaling, intervention)",
          "ours", "per channel Spearman of M (P1, exemplars fixed) vs log shortcut factor; exact sign test across "
          "channels that M rises with the shortcut; effect: net share of channels; Holm across blocks; symmetry with "
          "X1 (gamma and beta scaled by 1/g) as row values", prepare=plan_scaling,
          boundary=Boundary(0.5, +1, "net share of sampled channels moving with the dose", "sampled channels",
                            limits=(-1.0, 1.0)))
def shortcut_dose_response(ctx: ClaimContext):
    """X2 on the recaptured sites in ``ctx.intervention`` (see the module docstring).

    Example:
        >>> shortcut_dose_response(ctx).rows[0].values["symmetry_max_dev"]  # doctest: +SKIP
    """
    data = ctx.intervention
    if data is None:
        return not_run(ctx, Verdict.NOT_APPLICABLE, "no scaling data: X2 runs the model with a scaled shortcut")
    rows: list[BlockRow] = []
    for bl in data.blocks:
        bad = _base_checks(bl, bool(bl.shortcut))
        if bad is None:
            why = _faithful(ctx, data, bl, bl.shortcut)
            bad = row(bl.block, verdict=Verdict.INCONCLUSIVE, note=why) if why else None
        if bad is not None:
            rows.append(bad)
            continue
        block = ctx.map[bl.index]
        ms = [mix_ratios(ctx, block, bl.channels, data.n_images, {s: bl.shortcut[s][k] for s in bl.shortcut})[0]
              for k in range(len(data.factors))]
        m = np.stack(ms)
        rho = dose_response(m, data.factors)
        n_def = int((~np.isnan(rho)).sum())
        cat = categorize(m)
        values = {"channels_sampled": len(bl.channels), "channels_defined": n_def,
                  "channels_constant": int(np.all(np.isnan(m) | (m == m[:1]), axis=0).sum()),
                  "median_rho": float(np.nanmedian(rho)) if n_def else math.nan,
                  "frac_flip": float(flips(cat, data.factors)["changed"].mean())}
        values.update(_symmetry(ctx, data, bl, m))
        few = ctx.too_few(_Named(bl.block), n_def, what="channels whose M varies", values=values,
                          suffix=_why_constant(values))
        if few is not None:
            rows.append(few)
            continue
        try:
            test = net_share(rho, +1)
        except DegenerateDataError as exc:
            rows.append(row(bl.block, verdict=Verdict.INCONCLUSIVE, note=str(exc), values=values))
            continue
        rows.append(row(bl.block, test, values=values, note=f"symmetry with X1: max |Δ log M| "
                                                            f"{values['symmetry_max_dev']:.2g}"))
    return summarize(ctx, rows, direction=1, values={"n_factors": len(data.factors), "n_images": data.n_images})


def _symmetry(ctx, data, bl, m_short: np.ndarray) -> dict[str, float]:
    """How far M under shortcut x g is from M under gain (gamma and beta) x 1/g, in |log M| (NaN without a match)."""
    if "scaled" not in bl.gain:
        return {"symmetry_max_dev": math.nan, "frac_symmetric": math.nan}
    m_gain = _gain_m(ctx, data, bl, "scaled")[0]
    fac = np.asarray(data.factors, float)
    pairs = [(i, int(np.argmin(np.abs(fac - 1 / f)))) for i, f in enumerate(fac)]
    pairs = [(i, j) for i, j in pairs if abs(fac[j] * fac[i] - 1) < 1e-6]
    if not pairs:
        return {"symmetry_max_dev": math.nan, "frac_symmetric": math.nan}
    a = np.stack([m_short[i] for i, _ in pairs])
    b = np.stack([m_gain[j] for _, j in pairs])
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(np.log(a) - np.log(b))
    dev = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, dev)  # inf == inf, both undefined: agree
    dev = np.where(np.isnan(dev), np.inf, dev)  # one side undefined: disagree
    per_channel = dev.max(0)
    return {"symmetry_max_dev": float(per_channel.max()) if per_channel.size else math.nan,
            "frac_symmetric": float((per_channel <= 1e-3).mean()) if per_channel.size else math.nan}
