"""Model specs and checkpoint loading: every bad input is a clear, one-paragraph error."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from resstream_assert.errors import BackendUnavailable, CheckpointError, ModelSpecError
from resstream_assert import load_model
from resstream_assert.loading import ModelSpec, read_weights


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=7).state_dict()


def test_spec_grammar():
    assert ModelSpec.parse("zoo:resnet18-synth96").kind == "zoo"
    s = ModelSpec.parse("torchvision:resnet50@w.pth+nc-perm")
    assert (s.kind, s.target, s.weights, s.control) == ("torchvision", "resnet50", "w.pth", "nc-perm")
    s = ModelSpec.parse("mypkg.models:build@x.safetensors")
    assert (s.kind, s.target, s.weights) == ("factory", "mypkg.models:build", "x.safetensors")
    assert ModelSpec.parse("exports/m.onnx+nc-id").kind == "onnx"


@pytest.mark.parametrize("bad, match", [
    ("resnet18", "Cannot read model spec"),
    ("torchvision:resnet18+nc-nope", "Unknown negative control"),
    ("zoo:x@w.pth", "carry their own weights"),
])
def test_bad_specs(bad, match):
    with pytest.raises(ModelSpecError, match=match):
        ModelSpec.parse(bad)


def test_unknown_architecture_suggests_names():
    with pytest.raises(ModelSpecError, match="Unknown torchvision architecture 'resnet19'.*resnet18"):
        load_model("torchvision:resnet19")


def test_unknown_factory():
    with pytest.raises(ModelSpecError, match="Cannot import factory"):
        load_model("no_such_pkg.mod:build")


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_state_dict_variants_load(tmp_path, small_state, wrap):
    state = dict(small_state)
    if wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap != "plain":
        state = {wrap: state, "epoch": 3}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    loaded = load_model(f"torchvision:resnet18@{path}")
    assert loaded.num_classes == 7  # inferred from fc.weight
    assert torch.equal(loaded.module.fc.weight, small_state["fc.weight"])
    assert not loaded.module.training


def test_safetensors_and_digest(tmp_path, small_state):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in small_state.items()}, str(path))
    a = load_model(f"torchvision:resnet18@{path}")
    b = load_model(f"torchvision:resnet18@{path}")
    assert a.digest == b.digest
    state = dict(small_state)
    state["fc.bias"] = state["fc.bias"] + 1
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert load_model(f"torchvision:resnet18@{path}").digest != a.digest


def test_random_init_is_reproducible():
    assert load_model("torchvision:resnet18").digest == load_model("torchvision:resnet18").digest


def test_missing_file():
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("torchvision:resnet18@nowhere/w.pth")


def test_truncated_files(tmp_path, small_state):
    path = tmp_path / "w.pth"
    torch.save(small_state, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_model(f"torchvision:resnet18@{path}")
    st = tmp_path / "w.safetensors"
    st.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_weights(st)


def test_wrong_architecture(tmp_path, small_state):
    path = tmp_path / "w.pth"
    torch.save(small_state, path)
    with pytest.raises(CheckpointError, match="does not fit the architecture.*missing keys"):
        load_model(f"torchvision:resnet50@{path}")


def test_shape_mismatch(tmp_path, small_state):
    state = dict(small_state)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(f"torchvision:resnet18@{path}")


def test_pickled_model_refused_unless_trusted(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torchvision.models.resnet18(num_classes=3), path)
    with pytest.raises(CheckpointError, match="pickled Python objects.*trust"):
        load_model(f"torchvision:resnet18@{path}")
    loaded = load_model(f"torchvision:resnet18@{path}", trust_pickle=True)
    assert loaded.num_classes == 3


def test_cuda_saved_checkpoint_maps_to_cpu(tmp_path, small_state, monkeypatch):
    # A checkpoint saved on CUDA must load here: read_weights always passes map_location="cpu".
    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "w.pth"
    torch.save(small_state, path)
    read_weights(path)
    assert seen["map_location"] == "cpu" and seen["weights_only"] is True


def test_onnx_spec_without_file_is_clear():
    with pytest.raises((BackendUnavailable, CheckpointError)) as info:
        load_model("missing/model.onnx")
    assert "missing/model.onnx" in str(info.value) or "ONNX" in str(info.value)
