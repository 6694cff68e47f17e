"""Loading weights files in the formats public repositories publish them, and broken ones.

Each file in ``checkpoints.CHECKPOINTS`` is loaded with ``load_model("pkg.module:factory@PATH")``
(the full loader, :func:`resstream_assert.pipeline.load_model`) and must give the outcome its
generator describes: load, with the model then holding exactly the saved tensors (so the right
wrapper key and prefix were used), or be refused with a ``ResstreamError`` subclass whose
message names the problem. (Each defect this corpus found was first an ``xfail(strict=True)``;
all are fixed.)
"""

from __future__ import annotations

import re

import pytest
import torch

from resstream_assert import errors
from resstream_assert.errors import ResstreamError
from resstream_assert.pipeline import load_model

from . import architectures, checkpoints

def _params():
    return [pytest.param(name, id=name) for name in checkpoints.CHECKPOINTS]


@pytest.fixture(scope="module")
def model():
    return checkpoints.trained_like()


def _spec(factory: str, path) -> str:
    return f"{architectures.__name__}:{factory}@{path}"


@pytest.mark.parametrize("name", _params())
def test_checkpoint(name, model, tmp_path):
    path, expect = checkpoints.CHECKPOINTS[name](model, tmp_path)
    spec = _spec(expect["factory"], path)
    if expect["ok"]:
        loaded = load_model(spec, trust_pickle=expect["trust_pickle"], input_size=architectures.INPUT_SIZE)
        got = loaded.module.state_dict()
        missing = sorted(set(expect["state"]) - set(got))
        assert not missing, f"keys not in the loaded model: {missing[:5]}"
        differ = [k for k, v in expect["state"].items() if not torch.equal(got[k], v.to(got[k].dtype))]
        assert not differ, f"loaded tensors differ from the saved ones: {differ[:5]}"
        assert loaded.num_classes == expect["num_classes"]
        assert not loaded.module.training
    else:
        with pytest.raises(ResstreamError) as info:
            load_model(spec, input_size=architectures.INPUT_SIZE)
        msg = str(info.value)
        assert isinstance(info.value, getattr(errors, expect["error"])), type(info.value)
        assert re.search(expect["match"], msg, re.S), f"message does not name the problem ({expect['problem']}): {msg}"
        if expect.get("not_match"):
            assert not re.search(expect["not_match"], msg, re.S), f"message misdiagnoses {expect['problem']}: {msg}"


def test_saved_weights_differ_from_factory_init(model):
    """The equality checks above are not vacuous: the saved tensors are not the factory's seed-0 init."""
    torch.manual_seed(0)
    fresh = architectures.FACTORIES[checkpoints.ARCH]().state_dict()
    saved = model.state_dict()
    same = [k for k, v in saved.items() if torch.equal(fresh[k], v)]
    assert not same, same


def test_device_saved_file_really_says_cuda(model, tmp_path):
    """The 'saved on a GPU' file records cuda:0 storages: plain torch.load fails here without CUDA."""
    path, _ = checkpoints.device_saved(model, tmp_path)
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the file would load without map_location")
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        torch.load(path, weights_only=True)
    assert torch.load(path, map_location="cpu", weights_only=True).keys() == model.state_dict().keys()


def test_two_wrapped_copies_are_distinguishable(model, tmp_path):
    """timm / DeiT files hold a second (EMA) copy that differs, so the wrapper choice is really tested."""
    for gen, other in ((checkpoints.timm_train_checkpoint, "state_dict_ema"),
                       (checkpoints.deit_model_and_model_ema, "model_ema")):
        directory = tmp_path / gen.__name__
        directory.mkdir()
        path, expect = gen(model, directory)
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert not torch.equal(raw[other]["conv1.weight"], expect["state"]["conv1.weight"])
