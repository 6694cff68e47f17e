"""X1/X2: gain and shortcut scaling are exact edits, match the closed form, and leave the model alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.claims import REGISTRY
from resstream_assert.claims.gain_scaling import _gain_m, dose_response, flips, mix_ratios, net_share, plan_scaling
from resstream_assert.config import RunConfig
from resstream_assert.errors import InterventionError
from resstream_assert.interventions import segment_torch
from resstream_assert.interventions.settings import InterventionOptions, fingerprint, sample_channels
from resstream_assert.measures import MIX, OVERWRITE, SKIP, exemplars, mean_over, natural_scale
from resstream_assert.pipeline import Pipeline
from resstream_assert.results import Verdict

KUANGLIU = "tests.kuangliu_resnet:resnet18"
LINEAR = "tests.analytic_models:linear_block"


def _bench(spec: str, images: int = 64, size: int = 32, **io) -> Pipeline:
    return Pipeline(RunConfig(models=(spec,), images=images, input_size=size, progress=False,
                              claim_options={"intervention": io} if io else {}))


def _scaling(wb: Pipeline, spec: str, backend: str = "torch"):
    ctx = wb.context(spec, backend, ["X1"])
    return ctx, wb.intervention(spec, backend, plan_scaling(ctx.for_claim(REGISTRY["X1"])))


@pytest.fixture(scope="module")
def kuangliu(random_weights_spec):
    return random_weights_spec(KUANGLIU, 4)


# --- the edits are exact ------------------------------------------------------------------------

def test_batched_edit_equals_a_real_weight_edit_of_one_channel(kuangliu):
    """All channels scaled at once, factors stacked = scaling one BN gamma (or gamma and beta) in a copy."""
    wb = _bench(kuangliu, channels=8)
    ctx, data = _scaling(wb, kuangliu)
    loaded, rmap = wb.model(kuangliu), wb.map(kuangliu)
    bl = data.blocks[3]
    images = wb.probe(32).images[:data.n_images] / 255.0
    k = data.factors.index(0.25)
    for j, c in enumerate(bl.channels[:2]):
        for variant in ("held", "scaled"):
            edited = copy.deepcopy(loaded.module)
            bn = edited.get_submodule(rmap[bl.index].gain_source)
            with torch.no_grad():
                bn.weight[c] *= 0.25
                if variant == "scaled":
                    bn.bias[c] *= 0.25
            ref = capture_torch(edited, rmap, [images])
            for site, got in bl.gain[variant].items():
                np.testing.assert_allclose(got[k][:, j], ref.get(bl.index, site)[:, c], rtol=1e-4, atol=1e-5,
                                           err_msg=f"{variant} {site}")


def test_shortcut_edit_scales_only_the_summand(kuangliu):
    wb = _bench(kuangliu, channels=8)
    _, data = _scaling(wb, kuangliu)
    base = wb.responses(kuangliu)["id"]
    for bl in (data.blocks[0], data.blocks[2]):  # an identity and a projection shortcut
        k = data.factors.index(4.0)
        i = base.get(bl.index, "skip_out")[:, bl.channels]
        b = base.get(bl.index, "branch_out")[:, bl.channels]
        np.testing.assert_allclose(bl.shortcut["skip_out"][k], 4 * i, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bl.shortcut["resid_sum"][k], 4 * i + b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bl.shortcut["resid_post"][k], np.maximum(4 * i + b, 0), rtol=1e-4, atol=1e-5)


def test_linear_block_dose_response_matches_the_closed_form():
    """Linear branch, identity shortcut, no activation: O = I + f (B - beta) + beta (held) or I + f B (scaled)."""
    wb = _bench(LINEAR, images=96, size=16)
    ctx, data = _scaling(wb, LINEAR)
    (bl,) = data.blocks
    base = wb.responses(LINEAR)["id"]
    i, b = base.get(0, "skip_out"), base.get(0, "branch_out")
    beta = wb.model(LINEAR).module.bn.bias.detach().numpy()
    xi, xb = exemplars(i, 9), exemplars(b, 9)
    for variant in ("held", "scaled"):
        m1, m2 = _gain_m(ctx, data, bl, variant)
        np.testing.assert_array_equal(np.isnan(m1), np.isnan(m2))  # O is the sum itself: P1 = P2
        plain = np.ones(m1.shape[1], bool)  # channels where M is the plain ratio at every factor (no floor)
        for k, f in enumerate(data.factors):
            o = i + f * (b - beta) + beta if variant == "held" else i + f * b
            num, den = mean_over(o, xi), mean_over(o, xb)
            eps = 0.01 * natural_scale(o)
            want = np.where(den >= eps, np.maximum(num, eps) / den, np.nan)
            plain &= (num >= eps) & (den >= eps)
            np.testing.assert_allclose(m1[k], want, rtol=1e-4, equal_nan=True, err_msg=f"{variant} f={f}")
        # M(f) = (a + f b') / (c + f d'): monotone, falling in f exactly when a d' > b' c
        a, c = mean_over(i, xi), mean_over(i, xb)
        bb = mean_over(b - (beta if variant == "held" else 0), xi)
        dd = mean_over(b - (beta if variant == "held" else 0), xb)
        if variant == "held":
            a, c = a + beta, c + beta
        rho = dose_response(m1, data.factors)
        defined = ~np.isnan(rho) & plain
        assert defined.sum() >= 6
        np.testing.assert_array_equal(rho[defined], -np.sign(a * dd - bb * c)[defined])
    res = REGISTRY["X1"].evaluate(ctx.for_claim(REGISTRY["X1"], data))
    assert res.verdict in (Verdict.HOLDS, Verdict.INCONCLUSIVE)  # 12 channels: at the min_channels edge
    assert res.rows[0].values["frac_against"] == 0.0


def test_nc_id_nothing_changes():
    """NC-id: the branch is zero, so every channel is pure skip at every factor and neither claim can hold."""
    spec = "tests.cifar_user_model:resnet20+nc-id"
    wb = _bench(spec, channels=8)
    ctx, data = _scaling(wb, spec)
    by_index = {bm.index: bm for bm in ctx.measures}
    for bl in data.blocks:
        unmodified = by_index[bl.index].m_p1[bl.channels]
        assert np.all(unmodified[~np.isnan(unmodified)] == np.inf)  # pure skip (NaN: a silent shortcut too)
        assert (~np.isnan(unmodified)).sum() >= 1
        for variant in ("held", "scaled"):
            m1, _ = _gain_m(ctx, data, bl, variant)
            np.testing.assert_array_equal(m1, np.broadcast_to(unmodified, m1.shape))
            assert np.all(bl.gain[variant]["branch_out"] == 0)
        m2 = np.stack([mix_ratios(ctx, ctx.rmap[bl.index], bl.channels, data.n_images,
                                  {s: bl.shortcut[s][k] for s in bl.shortcut})[0] for k in range(len(data.factors))])
        np.testing.assert_array_equal(m2, np.broadcast_to(unmodified, m2.shape))
    res = wb.evaluate(spec, "torch", ["X1", "X2"])
    for cid in ("X1", "X2"):
        assert res[cid].verdict == Verdict.INCONCLUSIVE, cid
        assert all(r.values["frac_flip"] == 0 for r in res[cid].rows), cid
        assert "silent branch" in res[cid].rows[0].note


def test_layer_scale_blocks():
    """torchvision CNBlock: the gain is the layer scale (channels-last branch); held = scaled; real edit agrees."""
    spec = "tests.analytic_models:tiny_convnext"
    wb = _bench(spec, channels=8)
    ctx, data = _scaling(wb, spec)
    (bl,) = data.blocks  # the first of the two blocks is not analysed
    assert bl.gain_kind == "layer_scale" and "no beta" in bl.notes["held"]
    np.testing.assert_allclose(bl.gain["held"]["resid_sum"], bl.gain["scaled"]["resid_sum"], rtol=1e-6)
    loaded, rmap = wb.model(spec), wb.map(spec)
    edited = copy.deepcopy(loaded.module)
    k = data.factors.index(min(data.factors, key=lambda f: abs(f - 2.0)))
    with torch.no_grad():
        edited.blocks[1].layer_scale.mul_(data.factors[k])
    ref = capture_torch(edited, rmap, [wb.probe(32).images[:64] / 255.0])
    np.testing.assert_allclose(bl.gain["held"]["resid_sum"][k], ref.get(bl.index, "resid_sum")[:, bl.channels],
                               rtol=1e-4, atol=1e-5)


# --- the user's model is never changed -----------------------------------------------------------

def test_the_users_model_is_unchanged_after_every_intervention(kuangliu, tmp_path):
    from resstream_assert.loading.onnx_export import export_onnx

    wb = _bench(kuangliu, channels=4, x3_channels=2, x3_images=16, x4_images=4, n_steps=2)
    loaded = wb.model(kuangliu)
    params = {n: p.detach().clone() for n, p in loaded.module.state_dict().items()}
    ids = {n: id(p) for n, p in loaded.module.named_parameters()}
    before = fingerprint(loaded)
    onnx_path = tmp_path / "k.onnx"
    export_onnx(loaded, onnx_path)
    onnx_bytes = onnx_path.read_bytes()
    res = wb.evaluate(kuangliu, "torch", ["X1", "X2", "X3", "X4"])
    assert all(r.verdict != Verdict.NOT_APPLICABLE or "captum" not in r.reason for r in res.values())
    assert fingerprint(loaded) == before
    assert {n: id(p) for n, p in loaded.module.named_parameters()} == ids
    for n, t in loaded.module.state_dict().items():
        assert torch.equal(t, params[n]), n
    assert all(not m.training for m in loaded.module.modules())
    onnx_wb = _bench(str(onnx_path), channels=4, x3_channels=2, x3_images=16)
    onnx_wb.evaluate(str(onnx_path), "onnx", ["X1", "X2", "X3"])
    assert onnx_path.read_bytes() == onnx_bytes


def test_an_intervention_that_changed_the_model_is_an_error(kuangliu, monkeypatch):
    wb = _bench(kuangliu, channels=4)
    loaded = wb.model(kuangliu)
    original = segment_torch.Segment.run

    def leaky(self, values, factor=None, offset=None):
        with torch.no_grad():
            next(loaded.module.parameters()).add_(1e-3)  # a bug that writes into the user's weights
        return original(self, values, factor, offset)

    monkeypatch.setattr(segment_torch.Segment, "run", leaky)
    with pytest.raises(InterventionError, match="changed the model"):
        _scaling(wb, kuangliu)


# --- the statistics -----------------------------------------------------------------------------

def test_flips_and_dose_response_on_known_categories():
    fac = (0.25, 0.5, 1.0, 2.0, 4.0)
    cat = np.array([[SKIP, SKIP, SKIP, MIX], [SKIP, MIX, SKIP, MIX], [MIX, MIX, SKIP, MIX],
                    [MIX, OVERWRITE, SKIP, SKIP], [OVERWRITE, OVERWRITE, SKIP, -1]])
    f = flips(cat, fac)
    assert f["down"].tolist()[:2] == [0.5, 0.25] and np.isnan(f["down"][2]) and np.isnan(f["down"][3])
    assert f["up"].tolist()[:2] == [4.0, 2.0] and np.isnan(f["up"][2])
    assert f["against"].tolist() == [False, False, False, True]  # channel 3 becomes skip at 2x gain
    assert f["changed"].tolist() == [True, True, False, True]
    m = np.array([[4.0, 1.0, np.nan], [2.0, 1.0, np.nan], [1.0, 1.0, 2.0], [0.5, 1.0, np.nan], [0.25, 1.0, 3.0]])
    rho = dose_response(m, fac)
    assert rho[0] == -1.0 and np.isnan(rho[1]) and np.isnan(rho[2])  # constant; only 2 defined points


def test_sign_test_holds_on_planted_and_is_calibrated_on_null():
    rng = np.random.default_rng(0)
    planted = np.where(rng.random(64) < 0.9, -1.0, 1.0)
    t = net_share(planted, -1)
    assert t.p_value < 1e-6 and t.effect > 0.6 and t.ci_low > 0
    ps = np.array([net_share(rng.choice([-1.0, 1.0], 64), -1).p_value for _ in range(400)])
    assert np.mean(ps < 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 400)


def test_channel_sampling_is_seeded_and_shared():
    a, b = sample_channels(128, 16, 3, 5), sample_channels(128, 16, 3, 5)
    assert np.array_equal(a, b) and len(np.unique(a)) == 16 and not np.array_equal(a, sample_channels(128, 16, 4, 5))
    opts = InterventionOptions.from_mapping({"factors": [4, 1, 0.25]})
    assert opts.factors == (0.25, 1, 4)
    with pytest.raises(ValueError, match="including 1"):
        InterventionOptions(factors=(0.5, 2, 4)).check()
