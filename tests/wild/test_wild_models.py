"""Each public-style architecture, saved in one of the published checkpoint formats, loaded through a
model spec as a user would, discovered, and claim C3 run on it: C3 must analyse exactly the
identity-shortcut blocks (all but the first), and where those exist it must not report that there
is nothing to analyse. The input size of a factory model is read from its stem."""

from __future__ import annotations

import functools
import math
import warnings

import pytest

from resstream_assert.claims import ClaimOptions
from resstream_assert.config import RunConfig
from resstream_assert.errors import ResstreamWarning
from resstream_assert.pipeline import Pipeline, load_model
from resstream_assert.results import Verdict

from . import architectures as arch
from . import checkpoints

#: One published format per architecture (rotated, so every format class meets a different network).
FORMATS = ("kuangliu_net", "lightning_ckpt", "safetensors_file", "compiled_prefix", "imagenet_example",
           "legacy_no_num_batches_tracked", "wrapped_model_state_dict", "model_ema_only", "dataparallel_prefix",
           "legacy_serialization", "hf_pytorch_model_bin", "half_precision")
PAIRS = list(zip(arch.EXPECTED, FORMATS))


@functools.lru_cache(maxsize=None)
def _trained(name: str):
    return checkpoints.trained_like(name)


@pytest.mark.parametrize("name, fmt", [pytest.param(n, f, id=f"{n}-{f}") for n, f in PAIRS])
def test_saved_model_loads_is_discovered_and_c3_analyses_its_identity_blocks(name, fmt, tmp_path):
    path, expect = checkpoints.CHECKPOINTS[fmt](_trained(name), tmp_path)
    spec = f"{arch.__name__}:{name}@{path}"
    pipe = Pipeline(RunConfig(models=(spec,), images=64, input_size=arch.INPUT_SIZE, progress=False))
    loaded, rmap = pipe.model(spec), pipe.map(spec)
    assert loaded.weights.startswith(path.name)
    e = arch.EXPECTED[name]
    assert len(rmap) == e.n_blocks, rmap.table()
    assert tuple(b.projection for b in rmap) == e.projection, rmap.table()
    result = pipe.evaluate(spec, claims=["C3"], options=ClaimOptions(n_resamples=199, n_boot=0))["C3"]
    analysed = [row.block for row in result.rows]
    if e.c3_has_identity_blocks:
        assert analysed == [rmap[i].name for i in e.c3_blocks], result.table()
        assert "no identity-shortcut block" not in result.reason
        if set(e.gain_kind) == {"bn"} and any(rmap[i].channels >= 10 for i in e.c3_blocks):
            # a block was tested (64 images rarely decide it: a p-value, not a verdict, is what is checked)
            assert any(math.isfinite(row.p_value) for row in result.rows), result.table()
    else:
        assert result.verdict == Verdict.NOT_APPLICABLE and "no identity-shortcut block" in result.reason


@pytest.mark.parametrize("name", list(arch.EXPECTED))
def test_input_size_is_read_from_the_stem(name):
    """CIFAR-style stems (3x3, stride 1, no max-pool) mean 32 px; ImageNet-style stems (timm's) 224 px."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(f"{arch.__name__}:{name}")
    want = 224 if name.startswith("timm_") else 32
    assert loaded.input_size == want, loaded
    assert loaded.input_size_guessed and "guessed from the stem" in loaded.input_size_source
    notes = [str(w.message) for w in caught if issubclass(w.category, ResstreamWarning)]
    assert len(notes) == 1 and f"input size {want} px" in notes[0] and "--resstream-input-size" in notes[0]


def test_stated_sizes_are_not_guessed():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResstreamWarning)
        assert load_model(f"{arch.__name__}:resnet20", input_size=48).input_size == 48
        timm_model = load_model("timm:resnet18")
        zoo = load_model("zoo:cifar-resnet20-synth32")
    assert timm_model.input_size == 224 and timm_model.input_size_source == "timm pretrained_cfg"
    assert zoo.input_size == 32 and zoo.input_size_source == "model card"
