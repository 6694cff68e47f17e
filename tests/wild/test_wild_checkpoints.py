"""Loading weights files in the formats public repositories publish them, and broken ones.

Each file in ``checkpoints.CHECKPOINTS`` is loaded with ``load_model("pkg.module:factory@PATH")``
and must give the outcome its generator describes: load, with the model then holding exactly
the saved tensors (so the right wrapper key and prefix were used), or be refused with a
``ResstreamError`` subclass whose message names the problem. Tests the current code gets
wrong are ``xfail(strict=True)``, the defect as the reason.
"""

from __future__ import annotations

import re

import pytest
import torch

from resstream_assert import errors
from resstream_assert.errors import ResstreamError
from resstream_assert.loading import load_model

from . import architectures, checkpoints

NOT_RAISED = pytest.fail.Exception  # what pytest.raises raises when nothing was raised

#: checkpoint -> (reason, exception the defect raises in the test)
KNOWN_DEFECTS: dict[str, tuple[str, type[BaseException]]] = {
    "legacy_no_num_batches_tracked": (
        "defect: a state dict without BatchNorm num_batches_tracked buffers (torch < 0.4.1) is refused as "
        "'does not fit the architecture: N missing keys'; _load_state counts every key itself instead of "
        "letting BatchNorm fill the counter in, as nn.Module.load_state_dict(strict=True) does", errors.CheckpointError),
    "kuangliu_net": (
        "defect: the {'net': ...} wrapper (kuangliu/pytorch-cifar) is not unwrapped (read_weights knows only "
        "state_dict / model / model_state_dict), so the file 'does not fit the architecture'", errors.CheckpointError),
    "ema_only": ("defect: the {'ema': ...} wrapper is not unwrapped", errors.CheckpointError),
    "model_ema_only": ("defect: the {'model_ema': ...} wrapper is not unwrapped", errors.CheckpointError),
    "compiled_prefix": ("defect: the '_orig_mod.' key prefix of torch.compile(model).state_dict() is not stripped "
                        "(only 'module.' is)", errors.CheckpointError),
    "lightning_ckpt": ("defect: the 'model.' key prefix of a PyTorch Lightning checkpoint's state_dict is not "
                       "stripped (only 'module.' is)", errors.CheckpointError),
    "safetensors_named_pth": (
        "defect: the format is chosen by suffix, not content: a safetensors file named .pth goes to torch.load "
        "and is reported as 'pickled Python objects (probably a whole model)' with advice to trust it",
        errors.CheckpointError),
    "empty_file": ("defect: a 0-byte file gives 'could not be read by torch.load ()' (empty parentheses), "
                   "never saying the file is empty", AssertionError),
    "text_file": ("defect: a text file named .pth escapes as IndexError('pop from empty list') from the "
                  "unpickler, not a ResstreamError (read_weights does not catch IndexError)", IndexError),
    "git_lfs_pointer": (
        "defect: a Git LFS pointer file is misdiagnosed as 'pickled Python objects (probably a whole model)' "
        "and the message suggests --resstream-trust-pickle", AssertionError),
    "html_page": ("defect: an HTML page named .pth is misdiagnosed as 'pickled Python objects (probably a whole "
                  "model)' and the message suggests --resstream-trust-pickle", AssertionError),
    "junk_bytes": ("defect: random bytes are misdiagnosed as 'pickled Python objects (probably a whole model)' "
                   "and the message suggests --resstream-trust-pickle", AssertionError),
    "pickled_list": (
        "defect: a weights_only-readable non-dict (a list of tensors) is taken for a trusted whole model; "
        "_load_torch then calls .state_dict() on the list: AttributeError, not a ResstreamError", AttributeError),
    "directory_path": ("defect: a directory given as the weights path is reported as 'does not exist' "
                       "(read_weights tests is_file() only)", AssertionError),
    "nan_weight": ("defect: a state dict with a NaN weight is accepted silently (no finiteness check)", NOT_RAISED),
}


def _params():
    out = []
    for name in checkpoints.CHECKPOINTS:
        known = KNOWN_DEFECTS.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=known[0], raises=known[1])] if known else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


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
        loaded = load_model(spec, trust_pickle=expect["trust_pickle"])
        got = loaded.module.state_dict()
        missing = sorted(set(expect["state"]) - set(got))
        assert not missing, f"keys not in the loaded model: {missing[:5]}"
        differ = [k for k, v in expect["state"].items() if not torch.equal(got[k], v.to(got[k].dtype))]
        assert not differ, f"loaded tensors differ from the saved ones: {differ[:5]}"
        assert loaded.num_classes == expect["num_classes"]
        assert not loaded.module.training
    else:
        with pytest.raises(ResstreamError) as info:
            load_model(spec)
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
