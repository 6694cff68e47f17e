"""Measures: known answers on controls, and an independent recomputation from the definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resstream_assert.torch_utils import module_outputs
from resstream_assert.measures import MIX, OVERWRITE, SKIP, UNDEFINED, categorize, coded_ratio, measure_all
from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline
from resstream_assert.stimuli.variants import apply_variant

SPEC = "tests.cifar_user_model:resnet20"


@pytest.fixture(scope="module")
def weights(random_weights_spec):
    return random_weights_spec(SPEC, 3).partition("@")[2]


def _bench(spec: str, images: int = 96) -> Pipeline:
    # float32 storage: these tests recompute the measures from their definitions on a float32 capture
    return Pipeline(RunConfig(models=(spec,), images=images, input_size=32, progress=False, storage="float32"))


@pytest.mark.parametrize("control, expected", [("nc-id", SKIP), ("nc-plain", OVERWRITE)])
def test_controls_give_one_category(weights, control, expected):
    spec = f"{SPEC}@{weights}+{control}"
    wb = _bench(spec)
    ms = measure_all(wb.map(spec), wb.responses(spec))
    for bm in ms:
        for convention in ("p1", "p2"):
            cat = bm.category(convention)
            defined = cat[cat != UNDEFINED]
            assert defined.size > 0 and np.all(defined == expected), (bm.block, convention)


def test_undefined_channels_are_counted_not_coded():
    assert categorize(np.array([np.nan, 0.5, 1.0, 2.0])).tolist() == [UNDEFINED, OVERWRITE, MIX, SKIP]
    # Papers' codes: den <= 0 -> 10 (takes precedence), num <= 0 -> 0.
    assert coded_ratio(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 2.0])).tolist() == [10.0, 0.0, 0.5]


def test_recomputation_from_definitions(weights):
    """M_c, SM_B and SM_I equal a plain loop: one image at a time, hooks on named modules."""
    spec = f"{SPEC}@{weights}"
    wb = _bench(spec)
    loaded, rmap, probe = wb.model(spec), wb.map(spec), wb.probe(32)
    ms = measure_all(rmap, wb.responses(spec, ("id", "S", "Sinv")))
    model = loaded.module
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    # layer1.1: identity shortcut (input = layer1.0 output); layer2.0: option-A pad shortcut module.
    cases = {1: ("layer1.0", "layer1.1.bn2", "layer1.1"), 3: ("layer2.0.shortcut", "layer2.0.bn2", "layer2.0")}

    def center(t):
        return t[0, :, t.shape[2] // 2, t.shape[3] // 2]

    def responses(variant):
        out = {b: {"I": [], "B": [], "O": []} for b in cases}
        for i in range(len(probe)):
            x = torch.as_tensor(probe.images[i:i + 1] / 255.0, dtype=torch.float32)
            x = x if variant == "id" else apply_variant(x, variant)
            names = sorted({n for c in cases.values() for n in c})
            with module_outputs(model, names) as got, torch.no_grad():
                model((x - mean) / std)
            for b, (i_name, b_name, o_name) in cases.items():
                out[b]["I"].append(center(got[i_name]).numpy())
                out[b]["B"].append(center(got[b_name]).numpy())
                out[b]["O"].append(center(got[o_name]).numpy())
        return {b: {k: np.stack(v) for k, v in d.items()} for b, d in out.items()}

    plain, zoom_in, zoom_out = responses("id"), responses("S"), responses("Sinv")
    rng = np.random.default_rng(0)
    for b in cases:
        bm = ms[b]
        for c in rng.choice(bm.channels, size=5, replace=False):
            I, B, O = (plain[b][k][:, c] for k in "IBO")
            xi, xb = np.argsort(-I, kind="stable")[:9], np.argsort(-B, kind="stable")[:9]
            num, den = O[xi].mean(), O[xb].mean()
            eps = 0.01 * np.percentile(np.abs(O), 99)
            expected_m = np.nan if den < eps else max(num, eps) / den
            # Documented rule: a site that never varies has no preferred stimulus; a dead input
            # channel leaves the output to the branch alone (M = 0), a dead branch to the input (inf).
            if np.ptp(I) == 0 and np.ptp(B) > 0:
                expected_m = 0.0
            elif np.ptp(B) == 0 and np.ptp(I) > 0:
                expected_m = np.inf
            np.testing.assert_allclose(bm.m_p1[c], expected_m, rtol=1e-4, equal_nan=True)
            d_b = max(zoom_in[b]["B"][xi, c].mean(), 0) - max(B[xi].mean(), 0)
            d_i = max(zoom_out[b]["I"][xb, c].mean(), 0) - max(I[xb].mean(), 0)
            if B[xb].mean() >= 0.01 * np.percentile(np.abs(B), 99):
                np.testing.assert_allclose(bm.scale["sm_b"][c], d_b / B[xb].mean(), rtol=1e-3, atol=1e-5)
            if I[xi].mean() >= 0.01 * np.percentile(np.abs(I), 99) and I[xi].mean() > 0:
                np.testing.assert_allclose(bm.scale["sm_i"][c], d_i / I[xi].mean(), rtol=1e-3, atol=1e-5)
