"""Capture: clone matters, faithfulness, exact recomputation, memory shape, cache reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from resstream_assert.capture.cache import ResponseCache
from resstream_assert.torch_utils import module_outputs
from resstream_assert.capture.responses import Responses
from resstream_assert.capture.torch_fx import capture_torch, instrument
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.errors import CaptureError, ResstreamWarning
from resstream_assert.loading.random_weights import randomize_bn


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_bn(torchvision.models.resnet18().eval())


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((6, 3, 64, 64), dtype=np.float32)


def test_uncloned_hook_is_overwritten_and_cloned_is_exact(model, images):
    x = torch.as_tensor(images)
    with module_outputs(model, ["layer1.0.bn2"], clone=False) as raw, torch.no_grad():
        model(x)
    with module_outputs(model, ["layer1.0.bn2"], clone=True) as cloned, torch.no_grad():
        model(x)
    blk = model.layer1[0]
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        manual = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(stem)))))
    assert torch.allclose(cloned["layer1.0.bn2"], manual, atol=1e-6)
    # The uncloned tensor was overwritten by `out += identity` and the in-place ReLU.
    assert (raw["layer1.0.bn2"] - manual).abs().max() > 0.1
    assert (raw["layer1.0.bn2"] >= 0).all()


def test_fx_capture_equals_manual_bn2(model, images):
    rmap = discover_torch(model, 64)
    r = capture_torch(model, rmap, [images])
    x = (torch.as_tensor(images) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with module_outputs(model, ["layer2.1.bn2", "layer2.0"]) as out, torch.no_grad():
        model(x)
    bn2 = out["layer2.1.bn2"]
    h, w = bn2.shape[2] // 2, bn2.shape[3] // 2
    np.testing.assert_allclose(r.get(3, "branch_out"), bn2[:, :, h, w].numpy(), atol=1e-5)
    np.testing.assert_allclose(r.get(3, "branch_out", "mean"), bn2.mean((2, 3)).numpy(), atol=1e-5)
    np.testing.assert_allclose(r.get(3, "skip_out"), out["layer2.0"][:, :, h, w].numpy(), atol=1e-5)


def test_sites_are_consistent(model, images):
    rmap = discover_torch(model, 64)
    r = capture_torch(model, rmap, [images[:3], images[3:]])
    assert r.n_images == 6 and r.logits.shape == (6, 1000)
    for b in rmap:
        np.testing.assert_allclose(r.get(b, "resid_sum"), r.get(b, "skip_out") + r.get(b, "branch_out"), atol=1e-5)
        np.testing.assert_allclose(r.get(b, "resid_post"), np.maximum(r.get(b, "resid_sum"), 0), atol=1e-6)
        assert r.get(b, "branch_out").shape == (6, b.channels)  # images x channels, not maps


def test_faithfulness_check_catches_a_wrong_graph(model, images, monkeypatch):
    import resstream_assert.capture.torch_fx as tf

    rmap = discover_torch(model, 64)
    real = tf.instrument

    def broken(*args, **kwargs):
        gm, store = real(*args, **kwargs)
        gm.fc = torch.nn.Identity()  # the instrumented graph no longer matches forward()
        return gm, store

    monkeypatch.setattr(tf, "instrument", broken)
    with pytest.raises(CaptureError, match="not faithful"):
        capture_torch(model, rmap, [images])


def test_capture_runs_in_eval_mode_and_gives_the_user_their_mode_back(images):
    m = torchvision.models.resnet18().train()
    m.layer1.eval()  # a mixed state, as a user may leave it
    modes = {name: x.training for name, x in m.named_modules()}
    stats = m.bn1.running_mean.clone()
    rmap = discover_torch(m, 64)
    capture_torch(m, rmap, [images])  # its faithfulness check compares with the eval-mode forward
    assert {name: x.training for name, x in m.named_modules()} == modes
    assert torch.equal(m.bn1.running_mean, stats)  # nothing ran in train mode (BN statistics untouched)


def test_keep_maps_only_for_chosen_sites(model, images):
    rmap = discover_torch(model, 64)
    r = capture_torch(model, rmap, [images], keep_maps=("resid_sum",))
    assert set(k.split("/")[1] for k in r.maps) == {"resid_sum"}
    assert r.maps["0/resid_sum"].shape == (6, 64, 16, 16)


def test_edits_change_downstream(model, images):
    rmap = discover_torch(model, 64)
    base = capture_torch(model, rmap, [images])
    edited = capture_torch(model, rmap, [images], edits={(5, "resid_sum"): lambda t: t * 0})
    assert np.abs(edited.get(5, "resid_sum")).max() == 0
    assert not np.allclose(edited.logits, base.logits)
    np.testing.assert_allclose(edited.get(4, "resid_sum"), base.get(4, "resid_sum"))


def test_responses_roundtrip(tmp_path, model, images):
    r = capture_torch(model, discover_torch(model, 64), [images])
    r.save(tmp_path / "r.npz")
    back = Responses.load(tmp_path / "r.npz")
    assert back.variant == "id" and set(back.center) == set(r.center)
    np.testing.assert_array_equal(back.get(7, "resid_post"), r.get(7, "resid_post"))


def test_cache_reuses_and_survives_damage(tmp_path):
    cache = ResponseCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return Responses("id", {"0/x": np.ones((2, 2), np.float32)}, {}, None)

    cache.get_or_compute("k", compute)
    cache.get_or_compute("k", compute)
    assert (len(calls), cache.hits, cache.misses) == (1, 1, 1)
    (tmp_path / "k.npz").write_bytes(b"garbage")
    with pytest.warns(ResstreamWarning, match="cache entry k.npz.*not trusted.*discarded and is recomputed"):
        cache.get_or_compute("k", compute)
    assert len(calls) == 2
    good = (tmp_path / "k.npz").read_bytes()  # an entry cut short by an interrupted write: BadZipFile
    (tmp_path / "k.npz").write_bytes(good[: len(good) // 2])
    with pytest.warns(ResstreamWarning, match="BadZipFile"):
        assert cache.get_or_compute("k", compute).center["0/x"].shape == (2, 2)
    assert len(calls) == 3 and cache.hits == 1
    assert cache.get_or_compute("k", compute) is not None and cache.hits == 2  # the recomputed entry is sound


def test_instrument_does_not_touch_the_model(model, images):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    instrument(model, discover_torch(model, 64))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(n.startswith("_rs_") for n, _ in model.named_modules())


def test_non_finite_responses_are_an_error_naming_the_site(images):
    """A BatchNorm with zero variance and eps=0 divides by zero: the capture names the block and site
    (weights themselves are finite, so the loader's weight check cannot catch this)."""
    from resstream_assert.capture import capture
    from resstream_assert.loading import LoadedModel
    from resstream_assert.stimuli.probe import embedded_probe

    torch.manual_seed(0)
    m = randomize_bn(torchvision.models.resnet18(num_classes=10), seed=1).eval()
    with torch.no_grad():
        m.layer2[1].bn2.eps = 0.0
        m.layer2[1].bn2.running_var.zero_()
    loaded = LoadedModel(spec="x", name="r18-broken", backend="torch", module=m, input_size=64, num_classes=10,
                         digest="broken")
    rmap = discover_torch(m, 64)
    with pytest.raises(CaptureError, match=r"r18-broken produced non-finite responses .* at layer2\.1 branch_out "
                                           r"\(layer2\.1\.bn2, center: .*check the weights"):
        capture(loaded, rmap, embedded_probe(n=4, size=64), progress=False)


def test_float16_storage_keeps_m_and_every_verdict():
    """--resstream-storage auto (the default) keeps the untransformed responses, which pick the exemplars, in
    float32 and the transformed variants in float16: M is exact and every verdict of a zoo model unchanged."""
    import numpy as np

    from resstream_assert.claims import ClaimOptions, needed_variants
    from resstream_assert.claims.verdict_stability import evaluate_responses
    from resstream_assert.config import RunConfig
    from resstream_assert.measures import measure_all
    from resstream_assert.pipeline import Pipeline

    spec, claims = "zoo:cifar-resnet20-synth32", ["C1", "C3", "C5", "C6", "C8", "C9"]
    got = {}
    for storage in ("float32", "auto"):
        pipe = Pipeline(RunConfig(models=(spec,), images=256, progress=False, storage=storage, cache_dir=None))
        resp = pipe.responses(spec, needed_variants(claims))
        got[storage] = (resp, measure_all(pipe.map(spec), resp),
                        evaluate_responses(pipe.map(spec), resp, claims, options=ClaimOptions(n_boot=0)))
    resp = got["auto"][0]
    assert all(a.dtype == np.float32 for a in resp["id"].center.values())
    assert all(a.dtype == np.float16 for a in resp["S"].center.values())
    assert resp["S"].get(3, "branch_out").dtype == np.float32  # measures read float32
    for a, b in zip(got["float32"][1], got["auto"][1]):
        assert np.array_equal(a.m_p1, b.m_p1, equal_nan=True) and np.array_equal(a.m_p2, b.m_p2, equal_nan=True)
    assert {c: r.verdict for c, r in got["float32"][2].items()} == {c: r.verdict for c, r in got["auto"][2].items()}
