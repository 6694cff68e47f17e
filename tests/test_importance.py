"""X3/X4: single-channel output effects agree across backends, attributions are captum's on the whole
model, the category test holds on a planted effect and is calibrated on exchangeable categories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resstream_assert.capture.torch_fx import instrument, normalizer
from resstream_assert.claims import REGISTRY
from resstream_assert.claims.base import ClaimContext, ClaimOptions
from resstream_assert.claims.importance import category_test, plan_attribution, plan_downstream, softmax_kl
from resstream_assert.config import RunConfig
from resstream_assert.interventions.attribution import captum_missing
from resstream_assert.measures import MIX, OVERWRITE, SKIP
from resstream_assert.pipeline import Pipeline
from resstream_assert.results import Verdict

ALPHA = 0.05
needs_captum = pytest.mark.skipif(bool(captum_missing()), reason="captum is not installed (the attribution extra)")


def _bench(spec: str, images: int = 64, **io) -> Pipeline:
    return Pipeline(RunConfig(models=(spec,), images=images, input_size=32, progress=False,
                              claim_options={"intervention": io}))


@pytest.fixture(scope="module")
def kuangliu(random_weights_spec):
    return random_weights_spec("tests.kuangliu_resnet:resnet18", 5)


def _ctx(claim: str, n_boot: int = 100, n_resamples: int = 499) -> ClaimContext:
    options = ClaimOptions(n_resamples=n_resamples, n_boot=n_boot)
    return ClaimContext("m", "torch", None, (), {}, options=options).for_claim(REGISTRY[claim])


def _calibrated(ps: np.ndarray) -> bool:
    """The false-positive rate is at most alpha, up to 2.33 Monte-Carlo standard errors (one-sided 99%)."""
    return np.mean(ps < ALPHA) <= ALPHA + 2.33 * np.sqrt(ALPHA * (1 - ALPHA) / len(ps))


# --- the category test ------------------------------------------------------------------------

def test_category_test_holds_on_a_planted_effect_and_is_calibrated_on_exchangeable_categories():
    rng = np.random.default_rng(0)
    cat = np.repeat([SKIP, MIX, OVERWRITE], [20, 30, 14])
    planted = rng.lognormal(0, 1, cat.size) * np.where(cat == OVERWRITE, 4.0, 1.0)
    r = category_test(_ctx("X4"), "b", planted, cat, "test")
    assert r.p_value < 0.01 and r.effect > 0.1 and r.ci_low > 0 and "overwrite channels matter most" in r.note
    assert r.values["rank_biserial_overwrite_vs_skip"] > 0.5
    null = _ctx("X4", n_boot=0, n_resamples=199)
    ps = np.array([category_test(null, "b", rng.lognormal(0, 1, cat.size), rng.permutation(cat), "t").p_value
                   for _ in range(1000)])
    assert _calibrated(ps)
    few = category_test(_ctx("X4"), "b", planted, np.full(cat.size, SKIP), "t")
    assert few.verdict == Verdict.INCONCLUSIVE and "fewer than 2 categories" in few.note


def test_softmax_kl_known_values():
    base = np.log(np.array([[0.5, 0.5]]))
    other = np.log(np.array([[0.9, 0.1]]))
    want = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert softmax_kl(base, other[None])[0] == pytest.approx(want)
    assert softmax_kl(base, base + 3.0) == pytest.approx(0.0)  # a shift of all logits changes nothing


# --- X3 ---------------------------------------------------------------------------------------

def test_x3_edits_agree_between_torch_and_onnxruntime(kuangliu):
    wb = _bench(kuangliu, x3_channels=2, x3_images=16, x3_factors=(0.5, 2.0))
    data = {}
    for backend in ("torch", "onnx"):
        ctx = wb.context(kuangliu, backend, ["X3"])
        data[backend] = wb.intervention(kuangliu, backend, plan_downstream(ctx.for_claim(REGISTRY["X3"])))
    a, b = data["torch"], data["onnx"]
    np.testing.assert_allclose(a.base_logits, b.base_logits, rtol=1e-4, atol=1e-4)
    for x, y in zip(a.blocks, b.blocks):
        assert np.array_equal(x.channels, y.channels) and x.logits.shape == (2, len(x.channels), 16, 10)
        np.testing.assert_allclose(x.logits, y.logits, rtol=1e-4, atol=1e-4, err_msg=x.block)
        assert np.abs(x.logits - a.base_logits).max() > 1e-4  # the edits did something


def test_x3_on_nc_id_changes_nothing():
    spec = "tests.cifar_user_model:resnet20+nc-id"
    wb = _bench(spec, x3_channels=3, x3_images=16)
    res = wb.evaluate(spec, "torch", ["X3"])["X3"]
    ctx = wb.context(spec, "torch", ["X3"])
    data = wb.intervention(spec, "torch", plan_downstream(ctx.for_claim(REGISTRY["X3"])))
    for bl in data.blocks:
        np.testing.assert_allclose(bl.logits, np.broadcast_to(data.base_logits, bl.logits.shape), atol=1e-5)
    assert res.verdict == Verdict.INCONCLUSIVE  # one category (skip), and no effect to rank


# --- X4 ---------------------------------------------------------------------------------------

@needs_captum
def test_x4_attributions_are_captums_on_the_whole_model(kuangliu):
    """The tail-only attribution equals LayerIntegratedGradients on the full model with a hook after the add."""
    from captum.attr import LayerIntegratedGradients

    wb = _bench(kuangliu, x4_images=6, n_steps=8)
    ctx = wb.context(kuangliu, "torch", ["X4"]).for_claim(REGISTRY["X4"])
    data = wb.intervention(kuangliu, "torch", plan_attribution(ctx))
    loaded, rmap = wb.model(kuangliu), wb.map(kuangliu)
    bl = data.blocks[2]
    gm, _ = instrument(loaded.module, rmap, sites=(), edits={(bl.index, "resid_sum"): lambda t: t})
    norm = normalizer(loaded.mean, loaded.std, "cpu")
    x = norm(torch.as_tensor(wb.probe(32).images[:6]).float() / 255)
    target = loaded.module(x).argmax(1)
    lig = LayerIntegratedGradients(gm, gm.get_submodule(f"_rs_edit_{bl.index}_resid_sum"))
    attr = lig.attribute(x, baselines=norm(torch.zeros_like(x)), target=target, n_steps=8)
    np.testing.assert_allclose(bl.per_image, attr.sum((2, 3)).detach().numpy(), rtol=1e-3, atol=1e-4)
    assert 0 <= bl.delta < 0.2  # integrated gradients' completeness, up to the 8-step quadrature


@needs_captum
def test_x4_is_calibrated_when_categories_are_exchangeable(kuangliu):
    """On NC-perm's real attributions, with each block's categories permuted across its channels (seeded),
    the test rejects at most alpha of the time (within Monte-Carlo error)."""
    spec = kuangliu + "+nc-perm"
    wb = _bench(spec, x4_images=8, n_steps=4)
    ctx = wb.context(spec, "torch", ["X4"]).for_claim(REGISTRY["X4"])
    data = wb.intervention(spec, "torch", plan_attribution(ctx))
    by_index = {bm.index: bm for bm in ctx.measures}
    rng, null = np.random.default_rng(0), _ctx("X4", n_boot=0, n_resamples=199)
    ps = []
    for _ in range(150):
        for bl in data.blocks:
            cat = rng.permutation(by_index[bl.index].category("p1"))
            r = category_test(null, bl.block, np.abs(bl.per_image).mean(0), cat, "t")
            if r.verdict != Verdict.INCONCLUSIVE:
                ps.append(r.p_value)
    ps = np.array(ps)
    assert len(ps) >= 600
    assert _calibrated(ps)


@needs_captum
def test_x4_end_to_end_and_on_onnx(kuangliu):
    wb = _bench(kuangliu, x4_images=8, n_steps=4)
    res = wb.evaluate(kuangliu, "torch", ["X4"])["X4"]
    assert res.verdict in (Verdict.HOLDS, Verdict.FAILS, Verdict.INCONCLUSIVE) and not res.gate
    tested = [r for r in res.rows if r.verdict in (Verdict.HOLDS, Verdict.FAILS)]
    assert tested and all(0 <= r.effect <= 1 and "matter most" in r.note for r in tested)
    onnx = wb.evaluate(kuangliu, "onnx", ["X4"])["X4"]
    assert onnx.verdict == Verdict.NOT_APPLICABLE and "gradients" in onnx.reason
