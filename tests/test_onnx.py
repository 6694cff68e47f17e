"""The ONNX backend: discovery and capture agree with PyTorch block by block, for both exporters,
BN folded or kept; every bad input is a clear error.

Parity tolerance: per site, |onnx - torch| <= 1e-4 * max|torch| + 1e-6 (both reductions,
every channel, every image). Measured worst relative difference: ~2.5e-6 (CPU EP,
ORT_ENABLE_ALL, torch 2.14.1 / onnxruntime 1.32.0).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torchvision

from resstream_assert.capture.onnx_runtime import capture_onnx
from resstream_assert.loading.onnx_export import export_onnx
from resstream_assert.loading.onnx_file import load_onnx, read_model
from resstream_assert.loading.ort_session import provider_report
from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.discovery import discover
from resstream_assert.discovery.onnx_graph import discover_onnx
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.errors import BackendUnavailable, CaptureError, CheckpointError, DiscoveryError, ModelSpecError
from resstream_assert.loading import LoadedModel, ModelSpec
from resstream_assert.pipeline import load_model
from tests.cifar_user_model import resnet20
from resstream_assert.loading.random_weights import randomize_bn

RTOL = 1e-4
SIZE = 64


def _torch_model(module, size=SIZE, name="m") -> LoadedModel:
    return LoadedModel(spec=name, name=name, backend="torch", module=module.eval(), input_size=size,
                       num_classes=10, digest=name)


def _images(n=6, size=SIZE):
    return np.random.default_rng(0).random((n, 3, size, size), dtype=np.float32)


def _assert_close(ref, got, what=""):
    assert set(ref.center) == set(got.center) and set(ref.mean) == set(got.mean)
    for table in ("center", "mean"):
        for key, a in getattr(ref, table).items():
            b = getattr(got, table)[key]
            assert a.shape == b.shape, (what, key)
            tol = RTOL * float(np.abs(a).max()) + 1e-6
            assert float(np.abs(a - b).max()) <= tol, (what, table, key, float(np.abs(a - b).max()), tol)


def _same_structure(tmap, omap):
    assert omap.backend == "onnx" and len(omap) == len(tmap)
    for t, o in zip(tmap, omap):
        assert (o.name, o.channels, o.spatial, o.projection, o.post_activation) == \
               (t.name, t.channels, t.spatial, t.projection, t.post_activation)


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return _torch_model(randomize_bn(torchvision.models.resnet18(), 1), name="resnet18")


@pytest.fixture(scope="module")
def r18_torch(r18):
    tmap = discover_torch(r18, SIZE)
    return tmap, capture_torch(r18, tmap, [_images()[:3], _images()[3:]])


@pytest.fixture(scope="module")
def exports(r18, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {"ts": export_onnx(r18, d / "ts.onnx"), "ts_folded": export_onnx(r18, d / "tsf.onnx", fold_bn=True),
            "dynamo_folded": export_onnx(r18, d / "dynf.onnx", exporter="dynamo", fold_bn=True)}


@pytest.mark.parametrize("kind", ["ts", "ts_folded", "dynamo_folded"])
def test_resnet18_parity_with_torch(kind, exports, r18_torch):
    tmap, ref = r18_torch
    loaded = load_model(str(exports[kind]), providers=("cpu",))
    assert loaded.onnx.providers == ("CPUExecutionProvider",) and loaded.input_size == SIZE
    assert loaded.onnx.bn_folded == (kind != "ts")
    assert loaded.onnx.exporter == ("dynamo" if kind.startswith("dynamo") else "torchscript")
    omap = discover(loaded)
    _same_structure(tmap, omap)
    assert [b.gain_kind for b in omap] == ["bn" if kind == "ts" else "fused_conv_proxy"] * 8
    got = capture_onnx(loaded, omap, [_images()[:3], _images()[3:]])
    _assert_close(ref, got, kind)
    np.testing.assert_allclose(got.logits, ref.logits, rtol=RTOL, atol=RTOL * np.abs(ref.logits).max())


def test_unfolded_gains_equal_torch_and_folded_are_flagged_proxies(exports, r18_torch, r18):
    tmap, _ = r18_torch
    kept = discover_onnx(load_model(str(exports["ts"])))
    folded = discover_onnx(load_model(str(exports["ts_folded"])))
    b = kept["layer2.0"]
    assert b.sites["branch_out"] == "/layer2/layer2.0/bn2/BatchNormalization_output_0"
    assert b.sites["skip_out"] == "/layer2/layer2.0/downsample/downsample.1/BatchNormalization_output_0"
    assert b.sites["resid_post"] == "/layer2/layer2.0/relu_1/Relu_output_0"
    assert (b.gain_source, b.conv_source) == ("layer2.0.bn2", "layer2.0.conv2")
    for t, k, f in zip(tmap, kept, folded):
        np.testing.assert_allclose(k.branch_gain, t.branch_gain, rtol=1e-6)
        np.testing.assert_allclose(k.conv_magnitude, t.conv_magnitude, rtol=1e-5)
        assert f.gain_is_proxy and f.to_dict()["branch_gain"]["proxy"]
        # The proxy is the fused weight's per-channel norm: |gamma| / sqrt(var + eps) * ||W||.
        bn = r18.module.get_submodule(t.gain_source)
        w = r18.module.get_submodule(t.conv_source).weight.detach().double()
        expect = (bn.weight.detach().double().abs() / torch.sqrt(bn.running_var.double() + bn.eps)) * \
            w.flatten(1).norm(dim=1)
        np.testing.assert_allclose(f.branch_gain, expect.numpy(), rtol=1e-5)


def test_in_graph_reductions_equal_numpy_reductions_of_the_maps(exports):
    loaded = load_model(str(exports["ts"]))
    rmap = discover(loaded)
    x = [_images(3)]
    graph, numpy_ = capture_onnx(loaded, rmap, x), capture_onnx(loaded, rmap, x, reduce="numpy")
    for key, a in numpy_.center.items():
        np.testing.assert_array_equal(graph.center[key], a)  # the strided MaxPool is an exact copy
    _assert_close(numpy_, graph, "graph vs numpy")
    # resid_sum is derived as skip + branch when both are tapped; tapped alone it is read from the Add.
    direct = capture_onnx(loaded, rmap, x, sites=("resid_sum",))
    for b in rmap:
        for red in ("center", "mean"):
            a, d = direct.get(b, "resid_sum", red), graph.get(b, "resid_sum", red)
            assert np.abs(a - d).max() <= 1e-5 * np.abs(a).max(), (b.name, red)


def test_folded_and_unfolded_exports_give_the_same_responses(exports):
    out = {}
    for kind in ("ts", "ts_folded"):
        loaded = load_model(str(exports[kind]))
        out[kind] = capture_onnx(loaded, discover(loaded), [_images(4)])
    _assert_close(out["ts"], out["ts_folded"], "folded vs kept")


def test_dynamo_names_come_from_name_scopes(r18, tmp_path):
    path = export_onnx(r18, tmp_path / "dyn.onnx", exporter="dynamo")  # BN kept (optimize=False)
    loaded = load_model(str(path))
    assert loaded.onnx.exporter == "dynamo" and not loaded.onnx.bn_folded
    omap = discover(loaded)
    assert [b.name for b in omap] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                                      "layer4.0", "layer4.1"]
    assert omap["layer3.0"].gain_kind == "bn" and omap["layer3.0"].gain_source == "layer3.0.bn2"
    np.testing.assert_allclose(omap["layer3.0"].branch_gain, r18.module.layer3[0].bn2.weight.detach().abs().numpy())


def test_resnet50_parity(tmp_path):
    torch.manual_seed(0)
    # 32 px keeps it fast and puts layer4 at 1x1, the edge case of the center unit.
    tl = _torch_model(randomize_bn(torchvision.models.resnet50(), 2), size=32, name="resnet50")
    tmap = discover_torch(tl, 32)
    loaded = load_model(str(export_onnx(tl, tmp_path / "r50.onnx")))
    omap = discover(loaded)
    _same_structure(tmap, omap)
    assert omap[0].gain_source == "layer1.0.bn3" and omap[0].conv_source == "layer1.0.conv3"
    assert omap[-1].spatial == (1, 1)
    x = _images(2, 32)
    _assert_close(capture_torch(tl, tmap, [x]), capture_onnx(loaded, omap, [x]), "resnet50")


def test_convnext_layer_scale_and_no_post_activation(tmp_path):
    torch.manual_seed(0)
    m = torchvision.models.convnext_tiny()
    for mod in m.modules():
        if hasattr(mod, "layer_scale"):
            torch.nn.init.uniform_(mod.layer_scale, -1.0, 1.0)  # distinct per block and channel
    tl = _torch_model(m, name="convnext_tiny")
    tmap = discover_torch(tl, SIZE)
    loaded = load_model(str(export_onnx(tl, tmp_path / "cnx.onnx")))
    omap = discover(loaded)
    _same_structure(tmap, omap)
    assert len(omap) == 18 and all(b.gain_kind == "layer_scale" and not b.post_activation for b in omap)
    assert omap[4].gain_source == "features.3.1.layer_scale"
    for t, o in zip(tmap, omap):
        np.testing.assert_allclose(o.branch_gain, t.branch_gain, rtol=1e-6)
        np.testing.assert_allclose(o.conv_magnitude, t.conv_magnitude, rtol=1e-5)
    x = _images(2)
    _assert_close(capture_torch(tl, tmap, [x]), capture_onnx(loaded, omap, [x]), "convnext")


def test_cifar_option_a_shortcut_end_to_end_with_probe_and_variants(tmp_path):
    from resstream_assert.capture import capture
    from resstream_assert.stimuli.probe import embedded_probe

    torch.manual_seed(0)
    tl = _torch_model(randomize_bn(resnet20(), 3), size=32, name="resnet20")
    tmap = discover_torch(tl, 32)
    path = export_onnx(tl, tmp_path / "resnet20.onnx")
    loaded = load_model(str(path))
    omap = discover(loaded)
    _same_structure(tmap, omap)
    assert len(omap) == 9 and [b.projection for b in omap] == [False] * 3 + [True, False, False] * 2
    assert "Pad" in omap[3].sites["skip_out"]  # the option-A shortcut is a Slice+Pad chain
    probe = embedded_probe(n=16, size=32)
    ref = capture(tl, tmap, probe, variants=("id", "S"), batch_size=8, progress=False)
    got = capture(loaded, omap, probe, variants=("id", "S"), batch_size=8, progress=False)
    for v in ("id", "S"):
        assert got[v].n_images == 16
        _assert_close(ref[v], got[v], f"cifar {v}")


def test_torch_spec_on_onnx_backend_exports_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("RESSTREAM_CACHE_DIR", str(tmp_path))
    a = load_model("tests.cifar_user_model:resnet20", input_size=32, backend="onnx")
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert a.backend == "onnx" and a.module is None and len(files) == 1 and a.onnx_path == str(files[0])
    assert a.exported_from == "tests.cifar_user_model:resnet20" and a.num_classes == 10
    mtime = files[0].stat().st_mtime_ns
    b = load_model("tests.cifar_user_model:resnet20", input_size=32, backend="onnx")
    assert b.digest == a.digest and files[0].stat().st_mtime_ns == mtime
    assert len(discover(b)) == 9


def test_cli_export_writes_normalization_metadata(tmp_path, capsys):
    from resstream_assert.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", "tests.cifar_user_model:resnet20", str(out), "--input-size", "32", "--fold-bn"]) == 0
    assert "9 residual blocks" in capsys.readouterr().out
    m = load_model(str(out))
    assert m.onnx.bn_folded and m.onnx.normalisation_in_file and m.input_size == 32
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["resstream.fold_bn"] == "1" and "resstream.mean" in props
    assert main(["export", str(out), str(tmp_path / "again.onnx")]) == 2  # already ONNX: a clear error


# --- bad input ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    torch.manual_seed(0)
    return export_onnx(_torch_model(resnet20(), size=32, name="resnet20"), tmp_path_factory.mktemp("s") / "s.onnx")


def _save(model, path):
    onnx.save(model, str(path))
    return str(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(str(tmp_path / "nope.onnx"))


def test_not_onnx_file(tmp_path):
    p = tmp_path / "weights.onnx"
    torch.save({"w": torch.zeros(3)}, p)  # a zip archive, not protobuf
    with pytest.raises(CheckpointError, match="weights.onnx"):
        load_model(str(p))


def test_truncated_file(small_onnx, tmp_path):
    p = tmp_path / "cut.onnx"
    p.write_bytes(small_onnx.read_bytes()[: small_onnx.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.onnx.*(truncated|corrupt)"):
        load_model(str(p))


def test_opset_onnxruntime_cannot_run(small_onnx, tmp_path):
    model = onnx.load(str(small_onnx))
    model.opset_import[0].version = 99
    with pytest.raises(BackendUnavailable, match="opset"):
        load_model(_save(model, tmp_path / "future.onnx"))


def test_input_that_is_not_an_image(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    path = _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "mlp.onnx")
    with pytest.raises(ModelSpecError, match=r"mlp.onnx.*\(N, 3, H, W\)"):
        load_model(path)


def test_missing_external_data(small_onnx, tmp_path):
    model = onnx.load(str(small_onnx))
    p = tmp_path / "ext.onnx"
    onnx.save(model, str(p), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    assert len(discover(load_model(str(p)))) == 9  # complete: loads
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(CheckpointError, match="ext.onnx.data"):
        load_model(str(p))


def test_graph_without_residual_add(tmp_path):
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 2))
    loaded = load_model(str(export_onnx(_torch_model(plain, size=16), tmp_path / "plain.onnx")))
    with pytest.raises(DiscoveryError, match="No residual block.*Add"):
        discover(loaded)


def test_unavailable_provider_is_refused(small_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider.*offers only"):
        load_onnx(ModelSpec.parse(str(small_onnx)), None, ("cuda",))


def test_provider_report_names_what_runs():
    assert "CPUExecutionProvider" in provider_report(["cpu"])


def test_unfaithful_instrumented_graph_is_an_error(small_onnx, monkeypatch):
    import resstream_assert.capture.onnx_runtime as rt

    loaded = load_model(str(small_onnx))
    rmap = discover(loaded)

    class Wrong:
        def run(self, names, feeds):
            return [np.full((len(feeds["input"]), 10), 1e3, np.float32)]

    monkeypatch.setattr(rt, "plain_session", lambda *a, **k: Wrong())
    with pytest.raises(CaptureError, match="not faithful"):
        capture_onnx(loaded, rmap, [_images(2, 32)])


def test_torch_map_is_refused_and_file_is_not_modified(small_onnx):
    before = small_onnx.read_bytes()
    loaded = load_model(str(small_onnx))
    with pytest.raises(CaptureError, match="ResidualMap of the ONNX graph"):
        capture_onnx(loaded, discover_torch(resnet20(), 32), [_images(2, 32)])
    capture_onnx(loaded, discover(loaded), [_images(2, 32)])
    assert small_onnx.read_bytes() == before and read_model(small_onnx)[1] == loaded.digest


def test_an_onnx_file_is_named_by_its_file_and_remembers_what_it_was_exported_from(tmp_path):
    """``resstream export zoo:cifar-resnet20-synth32 r20.onnx`` then ``--resstream-model r20.onnx``: the run is
    labelled r20.onnx (not the torch spec in the file's metadata), which stays readable as ``exported_from``."""
    torch_model = load_model("zoo:cifar-resnet20-synth32")
    path = tmp_path / "r20.onnx"
    export_onnx(torch_model, path)
    loaded = load_model(str(path))
    assert loaded.name == "r20.onnx" and loaded.backend == "onnx"
    assert loaded.exported_from == "zoo:cifar-resnet20-synth32"
