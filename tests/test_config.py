"""Run settings: every option is checked at start-up, RunConfig and ClaimOptions refuse what the options
refuse (for Python and CLI users too), and models get short, stable labels."""

from __future__ import annotations

import pytest

from resstream_assert.claims import ClaimOptions
from resstream_assert.config import OPTIONS, ConfigError, RunConfig, build_run_config
from resstream_assert.loading import ModelSpec
from tests.test_bad_input import CASES


def test_every_checked_option_has_a_case_in_the_bad_input_corpus():
    covered = {a[len("--resstream-"):] for c in CASES for a in c.args if str(a).startswith("--resstream-")}
    covered |= {c.ini.split("=")[0].strip()[len("resstream_"):].replace("_", "-") for c in CASES if c.ini}
    missing = [o.name for o in OPTIONS if o.check is not None and o.name not in covered]
    assert not missing, f"options with a check but no bad-input case: {missing}"


def test_every_option_is_checked_at_start_up_even_when_unused():
    with pytest.raises(ConfigError, match="--resstream-report-figures"):
        build_run_config({"report-figures": __file__})  # a file where a folder is needed


@pytest.mark.parametrize("field, value, match", [
    ("seed", -1, "--resstream-seed -1"),
    ("images", 0, "--resstream-images 0"),
    ("input_size", -3, "--resstream-input-size -3"),
    ("batch_size", 0, "--resstream-batch-size 0"),
    ("backends", ("tensorflow",), "unknown backend tensorflow"),
    ("device", "tpu", "--resstream-device tpu"),
])
def test_run_config_refuses_what_the_options_refuse(field, value, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**{field: value})


@pytest.mark.parametrize("options, match", [
    ({"alpha": 2.0}, "alpha=2.0: must be strictly between 0 and 1"),
    ({"mostly": 5.0}, r"mostly=5.0: must be a fraction in \(0, 1\]"),
    ({"min_effect": float("nan")}, "min_effect=nan"),
    ({"n_resamples": 5}, "n_resamples=5: must be a whole number >= 99"),
    ({"min_channels": 0}, "min_channels=0"),
])
def test_claim_options_refuse_values_that_break_the_verdict_rule(options, match):
    """``@pytest.mark.resstream(mostly=5)`` or ``check_claim(..., alpha=2)`` must not reach summarize()."""
    with pytest.raises(ValueError, match=match):
        ClaimOptions(**options)


def test_labels_are_file_names_and_user_labels_win():
    cfg = RunConfig(models=("torchvision:resnet18@/runs/2024/v2/r18.pth", "/exports/r18.onnx", "zoo:resnet18-synth96"))
    assert cfg.model_labels() == ("torchvision:resnet18@r18.pth", "r18.onnx", "zoo:resnet18-synth96")
    assert cfg.to_dict()["models"] == list(cfg.model_labels()) and "/runs/" not in str(cfg.to_dict())
    named = cfg.with_(labels=("v2", "v2-onnx", "zoo"))
    assert named.label_of("/exports/r18.onnx") == "v2-onnx"
    assert named.label_of("torchvision:resnet50@/x/y.pth") == "torchvision:resnet50@y.pth"  # not a run model
    assert ModelSpec.parse("pkg.mod:build@C:\\ckpt\\w.pth+nc-id").label == "pkg.mod:build@w.pth+nc-id"


@pytest.mark.parametrize("models, labels, match", [
    (("a.b:f@/x/w.pth", "a.b:f@/y/w.pth"), (), "two models get the label 'a.b:f@w.pth'"),
    (("zoo:resnet18-synth96",), ("a", "b"), "given 2 time"),
    (("zoo:resnet18-synth96", "torchvision:resnet18"), ("same", "same"), "two models get the label 'same'"),
    (("zoo:resnet18-synth96",), ("r18[v2]",), "without spaces or brackets"),
])
def test_labels_must_name_models_apart(models, labels, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(models=models, labels=labels)


@pytest.mark.parametrize("option, keys", [
    ("lesion", ("n_random", "zooms", "max_images", "min_selected", "sequential")),
    ("intervention", ("variants", "channels", "images", "x3_channels", "x3_factors", "x3_images",
                      "attribution", "n_steps", "x4_images", "batch_size")),
])
def test_key_value_options_state_their_real_defaults_in_help(option, keys):
    """The --help text once promised n_random=200 and max_images=1024 while the code ran 100 and 512."""
    from resstream_assert.config import OPTION
    from resstream_assert.interventions.lesion import LesionOptions
    from resstream_assert.interventions.settings import InterventionOptions

    text = OPTION[option].help
    defaults = {"lesion": LesionOptions(), "intervention": InterventionOptions()}[option]
    fmt = lambda v: ",".join(f"{z:g}" if isinstance(z, float) else str(z) for z in v) if isinstance(v, tuple) \
        else str(v)  # noqa: E731
    for name in keys:
        assert f"{name}={fmt(getattr(defaults, name))}" in text, (name, text)
    if option == "intervention":  # seven factors do not fit a help line: it says how they are made
        assert len(defaults.factors) == 7 and defaults.factors[0] == 0.25 and defaults.factors[-1] == 4.0
        assert "7 log-spaced from 0.25 to 4" in text
