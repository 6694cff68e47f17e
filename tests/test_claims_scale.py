"""Scale-invariance claims C5-C9 on synthetic measures with known answers, and on a tiny real model.

Synthetic blocks plant scale-invariant channels (far above every null) where a claim must
hold, and draw the criterion and its nulls from one distribution where it must not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from resstream_assert.claims import REGISTRY
from resstream_assert.claims.base import ClaimContext, ClaimOptions
from resstream_assert.discovery.residual_map import SITES, Block, ResidualMap
from resstream_assert.measures import BlockMeasures
from resstream_assert.results import Verdict

ZOOMS = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0])
SCALE_CLAIMS = ("C5", "C6", "C7", "C8", "C9")
# Default blocks: b0 is skipped by the claims (as block 1.0 in the papers), then three stages.
SPATIAL = ((32, 32), (32, 32), (32, 32), (16, 16), (8, 8), (8, 8))


def _curves(rng, n, shape):
    """Zoom curves (n, Z): ``flat`` = sum of compensating summands, ``noise`` = independent summands."""
    t = (ZOOMS - 1.0)[None, :]
    if shape == "compensate":  # In rises with zoom, Pre falls by the same amount: the sum is flat
        slope = rng.uniform(0.5, 1.0, size=(n, 1))
        a = 1.0 + slope * t + 0.02 * rng.normal(size=(n, ZOOMS.size))
        b = 2.0 - slope * t + 0.02 * rng.normal(size=(n, ZOOMS.size))
    else:  # independent noisy summands of equal size: the sum is flatter only by averaging
        a = 1.0 + 0.3 * rng.normal(size=(n, ZOOMS.size))
        b = 1.0 + 0.3 * rng.normal(size=(n, ZOOMS.size))
    return a, b


def synth_block(index, rng, *, n=200, planted=True, frac_mix=0.6, zoom=True, scale=True, flip=True):
    """One block: ``planted`` puts SM_B, SM_I > 0 (and compensating zoom curves) on 80% of mix channels
    and draws every null with P(> 0) ~ 0.3; otherwise criterion and nulls are i.i.d. N(0, 1)."""
    mix = rng.random(n) < frac_mix
    m = np.where(mix, rng.uniform(0.8, 1.25, n), np.where(rng.random(n) < 0.5, 3.0, 0.3))
    hit = mix & (rng.random(n) < 0.8) if planted else np.zeros(n, bool)
    g = lambda: rng.normal(size=n)  # noqa: E731
    shift = -0.5 if planted else 0.0  # planted nulls: P(> 0) ~ 0.31 (and ~0.1 for both terms)
    sm_b, sm_i = np.where(hit, np.abs(g()) + 0.1, g()), np.where(hit, np.abs(g()) + 0.1, g())
    sc = {"sm_b": sm_b, "sm_i": sm_i, "delta_b": sm_b, "delta_i": sm_i,
          "sm_b_rev": g() + shift, "sm_i_rev": g() + shift, "sm_b_mismatch": g() + shift}
    sc["delta_b_rev"] = sc["sm_b_rev"]
    sc["delta_b_sym"] = sc["sm_b"] - sc["sm_b_rev"]  # zoom in minus zoom out, on the symmetric pair
    if flip:
        sc.update(sm_b_flip=g() + shift, sm_i_flip=g() + shift)
    zm = {}
    if zoom:
        zin, zpre = _curves(rng, n, "noise")
        cin, cpre = _curves(rng, n, "compensate")
        zin[hit], zpre[hit] = cin[hit], cpre[hit]
        pre_on_xi = rng.normal(size=(n, ZOOMS.size))
        pre_on_xi[hit] += 3.0 * (ZOOMS - 1.0)  # the block prefers zoomed-in copies of the input's feature
        zm = {"in": zin, "pre": zpre, "post": zin + zpre, "pre_on_xi": pre_on_xi, "zooms": ZOOMS.copy()}
    nan = np.full(n, np.nan)
    return BlockMeasures(block=f"b{index}", index=index, channels=n, responses_to_exemplars={}, m_p1=m, m_p2=m.copy(),
                         m_p1_coded=m.copy(), m_p2_coded=m.copy(), branch_gain=None, conv_magnitude=None,
                         gain_kind="none", b_at_xi=nan, rho_tuning=nan, rho_tuning_all=nan,
                         contribution_share=nan, scale=sc if scale else {}, zoom=zm)


def synth_ctx(planted=(True,) * 6, seed=0, data_seed=0, n=200, options=ClaimOptions(n_boot=300), **kw):
    rng = np.random.default_rng(data_seed)
    ms = tuple(synth_block(i, rng, n=n, planted=p, **kw) for i, p in enumerate(planted))
    blocks = tuple(Block(i, f"b{i}", {s: s for s in SITES}, n, spatial=SPATIAL[i]) for i in range(len(ms)))
    return ClaimContext(model="synthetic", backend="torch", rmap=ResidualMap("synthetic", 32, blocks),
                        measures=ms, responses={}, options=options, seed=seed)


def evaluate(cid, ctx):
    return REGISTRY[cid].evaluate(ctx.for_claim(REGISTRY[cid]))


@pytest.fixture(scope="module")
def planted():
    return synth_ctx()


@pytest.fixture(scope="module")
def null():
    return synth_ctx(planted=(False,) * 6)


@pytest.mark.parametrize("cid", ("C5", "C6", "C8", "C9"))
def test_planted_channels_hold(planted, cid):
    res = evaluate(cid, planted)
    assert res.verdict == Verdict.HOLDS, res.table()
    assert all(r.verdict == Verdict.HOLDS for r in res.rows), res.table()
    assert res.effect > 0 and res.seed == 0


@pytest.mark.parametrize("cid", ("C5", "C6", "C8", "C9"))
def test_nulls_at_the_true_rate_do_not_hold(null, cid):
    res = evaluate(cid, null)
    assert res.verdict != Verdict.HOLDS, res.table()
    assert not any(r.verdict == Verdict.HOLDS for r in res.rows), res.table()


def test_c5_values_and_figure(planted, null):
    res = evaluate("C5", planted)
    r = res.rows[0]
    assert r.values["frac_scale_inv"] == pytest.approx(r.statistic)
    assert r.values["frac_ci_low"] < r.statistic < r.values["frac_ci_high"]
    # planted channels are all mix channels: the scale conditions are tied to mixing
    assert r.values["p_scale_given_mix"] > r.values["p_scale_given_not_mix"]
    assert r.values["p_mix_association"] < 1e-3
    for name in ("reversed", "flip", "mismatch"):
        assert r.values[f"frac_{name}"] < r.statistic
    assert res.values["frac_scale_inv"] > res.values["frac_reversed"]
    fig = res.figures["scale_inv_fraction"]
    assert fig["type"] == "bars"
    panel = fig["panels"][0]
    assert list(panel["categories"]) == [f"b{i}" for i in range(1, 6)]
    assert {"P1 criterion", "P1 no-mix", "P2 criterion", "reversed null (P1)", "flip null (P1)",
            "mismatch null (P1)"} == set(panel["series"])
    # null model: the criterion fraction sits at the null level (about 0.6 * 0.25)
    assert abs(evaluate("C5", null).values["frac_scale_inv"] - 0.15) < 0.05


def test_c7_concentration():
    # planted in the first two stages only (b1-b3), the last stage (8x8: b4, b5) at the null level
    early = synth_ctx(planted=(True, True, True, True, False, False))
    res = evaluate("C7", early)
    assert res.verdict == Verdict.HOLDS, res.table()
    v = res.rows[0].values
    assert v["frac_early"] > v["frac_last"] and v["n_blocks_last"] == 2 and v["trend_p"] < 0.05
    assert res.gate is False  # low confidence in the direction: report-only
    # planted everywhere: no concentration; planted only in the last stage: the opposite
    for planted in ((True,) * 6, (False, False, False, False, True, True), (False,) * 6):
        assert evaluate("C7", synth_ctx(planted=planted)).verdict != Verdict.HOLDS


def test_c9_needs_compensation_not_just_averaging(null):
    # Independent summands make the sum flatter than each (averaging) in most channels, yet the
    # claim must not hold: freezing either summand makes the sum flatter still.
    res = evaluate("C9", synth_ctx(planted=(False,) * 6, frac_mix=0.9))
    tested = [r for r in res.rows if r.verdict in (Verdict.HOLDS, Verdict.FAILS)]
    assert tested and res.verdict != Verdict.HOLDS
    assert all(r.values["effect_cf_in"] < 0 and r.values["effect_cf_pre"] < 0 for r in tested)
    assert np.mean([r.values["effect_sum_vs_best"] for r in tested]) > 0
    fig = evaluate("C9", synth_ctx())
    panel = fig.figures["zoom_response"]["panels"][0]
    assert fig.figures["zoom_response"]["type"] == "lines" and len(panel["x"]) == ZOOMS.size
    assert {"Post (selected)", "In (selected)", "Pre (selected)", "Post (others)"} <= set(panel["series"])
    assert "Post (selected)" in panel["bands"]


def test_c6_reports_direction_and_peak_zoom(planted):
    r = evaluate("C6", planted).rows[0]
    assert r.values["p_direction"] < 0.05 and r.values["effect_direction"] > 0
    assert r.values["p_mismatch"] < 0.05 and r.values["p_flip"] < 0.05
    parts = ("sign", "direction", "mismatch", "flip")
    assert r.p_value == max(r.values[f"p_{k}"] for k in parts)  # intersection-union
    binding = max(parts, key=lambda k: r.values[f"p_{k}"])
    assert (r.effect, r.ci_low, r.ci_high) == tuple(r.values[f"{q}_{binding}"] for q in ("effect", "ci_low", "ci_high"))
    assert r.values["frac_zstar_gt1"] > r.values["zstar_chance"]
    assert r.values["median_log_zstar"] > 0
    # without zoom variants C6 still tests SM_B (z* is only reported)
    r2 = evaluate("C6", synth_ctx(zoom=False)).rows[0]
    assert r2.verdict == Verdict.HOLDS and "frac_zstar_gt1" not in r2.values


def test_c8_reference_only_for_resnet18_names():
    from resstream_assert.loading import as_spec

    ctx = synth_ctx()
    ms = list(ctx.measures)
    ms[3] = BlockMeasures(**{**ms[3].__dict__, "block": "layer2.1", "channels": 200})
    for model, expect in (("synthetic", False), ("torchvision:resnet18", False)):
        res = evaluate("C8", ClaimContext(**{**ctx.__dict__, "measures": tuple(ms), "model": model}))
        assert ("reference_frac" in res.rows[2].values) is expect  # 200 channels != 128: no reference
    ms[3] = BlockMeasures(**{**ms[3].__dict__, "channels": 128, "m_p1": ms[3].m_p1[:128], "m_p2": ms[3].m_p2[:128],
                             "scale": {k: v[:128] for k, v in ms[3].scale.items()}})
    res = evaluate("C8", ClaimContext(**{**ctx.__dict__, "measures": tuple(ms), "model": "torchvision:resnet18"}))
    v = res.rows[2].values
    assert v["reference_frac"] == pytest.approx(23 / 128)
    assert v["reference_diff"] == pytest.approx(v["frac_scale_inv"] - 23 / 128)
    # tolerance and channel numbers mean nothing without the author's ImageNet weights
    assert "reference_overlap_p" not in v and "within_reference_tolerance" not in v
    # the weights are read from the run's parsed spec, not from the label (a label is free-form: --resstream-label)
    author = "torchvision:resnet18@IMAGENET1K_V1"
    res = evaluate("C8", ClaimContext(**{**ctx.__dict__, "measures": tuple(ms), "model": author}))
    assert "reference_overlap_p" not in res.rows[2].values
    res = evaluate("C8", ClaimContext(**{**ctx.__dict__, "measures": tuple(ms), "model": "r18-v1",
                                         "model_spec": as_spec(author)}))
    assert 0 <= res.rows[2].values["reference_overlap_p"] <= 1
    assert res.rows[2].values["within_reference_tolerance"] in (0.0, 1.0)


@pytest.mark.parametrize("cid", SCALE_CLAIMS)
def test_same_seed_same_result(cid):
    a, b = evaluate(cid, synth_ctx(seed=3)), evaluate(cid, synth_ctx(seed=3))
    assert a.to_dict() == b.to_dict()
    c = evaluate(cid, synth_ctx(seed=4))
    assert c.verdict == a.verdict and c.seed == 4


@pytest.mark.parametrize("cid", SCALE_CLAIMS)
def test_missing_scale_variants_not_applicable(cid):
    res = evaluate(cid, synth_ctx(scale=False))
    assert res.verdict == Verdict.NOT_APPLICABLE
    assert "S and Sinv" in res.reason


@pytest.mark.parametrize("cid", ("C5", "C6", "C7", "C8"))
def test_missing_flip_not_applicable(cid):
    res = evaluate(cid, synth_ctx(flip=False))
    assert res.verdict == Verdict.NOT_APPLICABLE and "flip" in res.reason


def test_summation_does_not_need_flip():
    assert evaluate("C9", synth_ctx(flip=False)).verdict == Verdict.HOLDS


def test_missing_zoom_c9_not_applicable():
    res = evaluate("C9", synth_ctx(zoom=False))
    assert res.verdict == Verdict.NOT_APPLICABLE and "zoom" in res.reason


@pytest.mark.parametrize("cid", SCALE_CLAIMS)
def test_too_few_channels_inconclusive(cid):
    # 3 channels per block: below min_channels per block, and for C7 also pooled per stage
    res = evaluate(cid, synth_ctx(n=3))
    assert res.verdict == Verdict.INCONCLUSIVE
    assert "< 10" in res.reason
    assert math.isnan(res.p_value)


def test_too_few_selected_channels_inconclusive():
    # 40 defined channels but only ~2% in the mix band: C6 and C9 have nothing to test
    ctx = synth_ctx(n=40, frac_mix=0.02)
    for cid in ("C6", "C9"):
        res = evaluate(cid, ctx)
        assert res.verdict == Verdict.INCONCLUSIVE, res.table()
        assert "cannot reach alpha" in res.reason


def test_nan_channels_are_excluded_and_counted():
    ctx = synth_ctx()
    ms = list(ctx.measures)
    sc = dict(ms[1].scale)
    sc["sm_b"] = sc["sm_b"].copy()
    sc["sm_b"][:50] = np.nan
    ms[1] = BlockMeasures(**{**ms[1].__dict__, "scale": sc})
    res = evaluate("C5", ClaimContext(**{**ctx.__dict__, "measures": tuple(ms)}))
    assert res.rows[0].n == 150 and res.rows[0].values["n_undefined"] == 50


# --- a tiny real model (random-init CIFAR ResNet-20) and its negative controls --------------

@pytest.fixture(scope="module")
def real_results():
    pytest.importorskip("torch")
    from resstream_assert.config import RunConfig
    from resstream_assert.measures import measure_all
    from resstream_assert.pipeline import Pipeline

    out = {}
    for control in ("nc-rand", "nc-perm"):
        spec = f"tests.cifar_user_model:resnet20+{control}"
        wb = Pipeline(RunConfig(models=(spec,), images=64, input_size=32, progress=False, cache_dir=None))
        resp = wb.responses(spec, REGISTRY["C8"].needs)
        ctx = ClaimContext(model=spec, backend="torch", rmap=wb.map(spec),
                           measures=tuple(measure_all(wb.map(spec), resp)), responses=resp, seed=0)
        out[control] = {cid: evaluate(cid, ctx) for cid in ("C5", "C8")}
    return out


@pytest.mark.parametrize("control", ("nc-rand", "nc-perm"))
def test_real_negative_controls_c8_does_not_hold(real_results, control):
    res = real_results[control]["C8"]
    assert res.verdict != Verdict.HOLDS, res.table()
    assert res.verdict in (Verdict.FAILS, Verdict.INCONCLUSIVE)
    assert real_results[control]["C5"].verdict != Verdict.HOLDS


def test_c6_needs_zoom_in_to_beat_zoom_out():
    """SM_B > 0 in every mix channel, but zooming out raises the block's response as much (a transform
    that only adds variance to ReLU'd responses does this): no preference for zooming in. The sign
    test alone held here; the intersection-union with the paired zoom-in vs zoom-out test does not."""
    from dataclasses import replace

    ctx = synth_ctx(planted=(False,) * 6)
    rng = np.random.default_rng(5)
    ms = []
    for bm in ctx.measures:
        up, down = (np.abs(rng.normal(size=bm.channels)) + 0.01 for _ in range(2))
        ms.append(replace(bm, scale={**bm.scale, "sm_b": up, "delta_b": up, "sm_b_rev": down, "delta_b_rev": down,
                                     "delta_b_sym": up - down}))
    res = evaluate("C6", replace(ctx, measures=tuple(ms)))
    tested = [r for r in res.rows if np.isfinite(r.p_value)]  # every block with a test, decided or not
    assert len(tested) == 5
    assert all(r.values["p_sign"] < 1e-6 and r.values["p_direction"] > 0.01 for r in tested), res.table()
    assert all(r.effect == r.values["effect_direction"] for r in tested)  # the binding test's effect
    assert all(r.p_value == r.values["p_direction"] and r.note == "binding: zoom in vs zoom out" for r in tested)
    assert res.verdict == Verdict.FAILS and not any(r.verdict == Verdict.HOLDS for r in tested)


# --- C6 on NC-perm: a zoom preference must be the channel's own ---------------------------------

def _c6_on(effects, seed: int, permuted: bool, channels: int = 128):
    from calibration.nulls import permute_branch
    from calibration.generator import ALL_VARIANTS, synthetic_responses
    from resstream_assert.claims.verdict_stability import evaluate_responses

    rmap, resp = synthetic_responses(seed, n_images=512, channels=channels, effects=effects, variants=ALL_VARIANTS)
    if permuted:  # NC-perm at the response level: each block's branch channels permuted, in every variant
        resp = permute_branch(rmap, resp, np.random.default_rng(seed))
    return evaluate_responses(rmap, resp, ["C6"], options=ClaimOptions(n_boot=0), seed=seed)["C6"]


def test_c6_fails_on_nc_perm():
    """Every branch channel prefers the papers' blurry zoom-in on any image (``zoom_bias``): NC-perm keeps that
    preference, and the sign test with the S-vs-S^-1 Wilcoxon held in 7 of 7 blocks on it. Channel specificity
    (McNemar against another channel's exemplars) and the symmetric zoom pair make C6 fail: at 128 channels
    (about 50 mix channels a block) the intervals are too wide to clear the boundary, so C6 never holds; at 512
    channels they clear it and C6 fails."""
    from calibration.generator import Effects

    for seed in range(2):
        res = _c6_on(Effects(zoom_bias=0.3), seed, permuted=True)
        assert res.verdict != Verdict.HOLDS, res.table()
        tested = [r for r in res.rows if np.isfinite(r.p_value)]
        assert len(tested) == 7 and not any(r.verdict == Verdict.HOLDS for r in tested)
        assert np.median([r.values["p_sign"] for r in tested]) < 0.05  # the sign test alone is fooled
        assert all(max(r.values["p_mismatch"], r.values["p_direction"]) > 0.05 for r in tested)
        assert np.median([r.values["p_mismatch"] for r in tested]) > 0.1  # not channel-specific
    wide = _c6_on(Effects(zoom_bias=0.3), 0, permuted=True, channels=512)
    assert wide.verdict == Verdict.FAILS, wide.table()


def test_c6_holds_on_planted_equivariance_and_fails_once_permuted():
    from calibration.generator import Effects

    planted = Effects(scale_frac=0.6, scale_size=2.0)
    assert _c6_on(planted, 0, permuted=False).verdict == Verdict.HOLDS
    assert _c6_on(planted, 0, permuted=True).verdict != Verdict.HOLDS  # 128 channels: too few to say "fails"
    assert _c6_on(planted, 0, permuted=True, channels=512).verdict == Verdict.FAILS


def test_c6_on_a_trained_model_with_nc_perm():
    pytest.importorskip("torch")
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    spec = "zoo:cifar-resnet20-synth32+nc-perm"
    res = Pipeline(RunConfig(models=(spec,), images=256, progress=False)).evaluate(spec, claims=["C6"])["C6"]
    assert res.verdict != Verdict.HOLDS, res.table()
