"""The release gate must not pass a run whose verdicts changed or that checked nothing (issue 17).

Each test runs the exact command a user would (the suite through pytester, or the ``resstream``
command) on the smallest zoo model, with few images and two claims, and asserts the exit status
and a message that names the problem; each has a control where the gate must still pass. The
one-command refusals at start-up (a report path that is the baseline, a baseline of another
model or probe size, malformed baselines, incomplete shard sets) are cases of
``tests/test_bad_input.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import resstream_assert.pytest_plugin.reporting  # noqa: F401
from resstream_assert.cli import main as cli_main
from resstream_assert.errors import CaptureError, ResstreamWarning
from tests import test_bad_input  # noqa: F401 - imports, once, every module an in-process run may import
from tests.wild import architectures, checkpoints

CIFAR = "zoo:cifar-resnet20-synth32"
W = "tests.wild.architectures:resnet20"
SUITE = ("--pyargs", "resstream_assert.suite", "-p", "no:cacheprovider", "--resstream-no-cache")


def broken_resnet20(num_classes: int = 10):
    """A CIFAR ResNet-20 whose finite weights give NaN responses (a BatchNorm with zero variance and eps 0):
    it loads and is discovered at start-up, and errors in its tests."""
    model = architectures.resnet20(num_classes=num_classes)
    with torch.no_grad():
        model.layer2[1].bn2.eps = 0.0
        model.layer2[1].bn2.running_var.zero_()
    return model


def _run(pytester: pytest.Pytester, *args: str, model: str = CIFAR, images: str = "64",
         claims: str = "C1,C3") -> tuple[int, str]:
    result = pytester.runpytest(*SUITE, "--resstream-model", model, "--resstream-images", images,
                                "--resstream-claims", claims, *args)
    return int(result.ret), result.stdout.str() + result.stderr.str()


# --- 2: a baseline of another model, or of another probe size ----------------------------------------------

def test_a_baseline_of_another_architecture_is_refused_and_a_new_checkpoint_is_compared(pytester, tmp_path):
    """``pytest --pyargs resstream_assert.suite --resstream-model tests.wild.architectures:resnet20
    --resstream-baseline b.json`` with b.json written for the zoo's ResNet-20: its block names match, its channels
    do not."""
    code, out = _run(pytester, "--resstream-baseline", "b.json", "--resstream-update-baseline", "--resstream-survey")
    assert "baseline written to b.json" in out, out
    code, out = _run(pytester, "--resstream-baseline", "b.json", "--resstream-input-size", "32", model=W)
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert f"{W}[torch]: model {W}, the baseline's is {CIFAR}" in out
    assert "block list differs (9 blocks, the baseline's 9; only in the baseline: layer1.0 (16 ch)" in out
    # control: a new checkpoint of the same architecture is what a baseline gates; it is compared
    for seed, name in ((1, "v1.pth"), (2, "v2.pth")):
        torch.save(checkpoints.state_of(checkpoints.trained_like(seed=seed)), pytester.path / name)
    # (C3 in one block is a decision these 16-64-channel networks reach: a baseline that decides nothing is not
    # written; at the default of every block, C3 stays inconclusive on them)
    few = ("--resstream-mostly", "0.15", "--resstream-min-effect", "C3=0", "--resstream-input-size", "32")
    code, out = _run(pytester, "--resstream-baseline", "c.json", "--resstream-update-baseline", "--resstream-survey",
                     *few, model=f"{W}@v1.pth", claims="C3")
    assert "baseline written to c.json" in out, out
    code, out = _run(pytester, "--resstream-baseline", "c.json", "--resstream-survey", *few, model=f"{W}@v2.pth",
                     claims="C3")
    assert code != pytest.ExitCode.USAGE_ERROR and "cannot be compared" not in out, out
    assert f"note: model {W}@v2.pth[torch] compared with baseline model {W}@v1.pth[torch]" in out


def test_a_baseline_at_another_probe_size_is_refused_unless_allowed_and_then_noted(pytester):
    """``... --resstream-images 128 --resstream-baseline b.json`` with b.json made at 64 images."""
    _run(pytester, "--resstream-baseline", "b.json", "--resstream-update-baseline", "--resstream-survey")
    code, out = _run(pytester, "--resstream-baseline", "b.json", images="128")
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert "images: baseline 64, this run 128" in out and f"{CIFAR}[torch]: 128 probe images, the baseline's 64" in out
    code, out = _run(pytester, "--resstream-baseline", "b.json", "--resstream-allow-probe-size",
                     "--resstream-report-json", "r.json", images="128")
    assert code != pytest.ExitCode.USAGE_ERROR, out
    note = "note: the baseline was made with 64 probe images, this run with 128 (--resstream-allow-probe-size)"
    assert note in out
    assert any(n.startswith(note) for n in json.loads((pytester.path / "r.json").read_text())["baseline"]["notes"])


# --- 4: a comparison that compared nothing ---------------------------------------------------------------

def test_a_baseline_that_covers_none_of_the_run_s_claims_fails(pytester):
    """``... --resstream-baseline b.json`` where b.json holds none of the run's claims; and ``-k`` that
    deselects every test: the banner said "baseline passed" (0 compared)."""
    _run(pytester, "--resstream-baseline", "b.json", "--resstream-update-baseline", "--resstream-survey")
    same, out = _run(pytester, "--resstream-baseline", "b.json", "--resstream-survey")
    assert same == pytest.ExitCode.OK and "resstream baseline passed" in out, out  # control: compared, unchanged
    base = json.loads((pytester.path / "b.json").read_text())
    for r, other in zip(base["results"], ("C5", "C6")):
        r["claim"] = other
    (pytester.path / "other.json").write_text(json.dumps(base))
    code, out = _run(pytester, "--resstream-baseline", "other.json", "--resstream-survey")
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "resstream baseline FAILED" in out and "nothing was compared: no claim result of this run is in" in out
    code, out = _run(pytester, "--resstream-baseline", "b.json", "-k", "no_test_has_this_name")
    assert code != pytest.ExitCode.OK and "resstream baseline FAILED" in out, out
    assert "nothing was compared: this run recorded no claim result" in out


# --- 5: runs that decide nothing -------------------------------------------------------------------------

@pytest.mark.parametrize("args, model, why", [
    (("--resstream-claims", "C11"), CIFAR, "C11 not_applicable: C11 compares with the papers' numbers"),
    (("--resstream-images", "5"), CIFAR, "C1 inconclusive: 5 probe images < 50 (min_images)"),
    (("--resstream-input-size", "32"), f"{W}@zeros.pth", "C1 inconclusive: 8 block(s): 0 defined channels"),
    (("--resstream-stimuli", "featviz", "--resstream-featviz-steps", "0", "--resstream-channels", "4"), CIFAR,
     "[torch+featviz]: 0 of 2 gated claims decided"),
])
def test_a_run_that_decides_nothing_fails_and_survey_mode_says_so_loudly(pytester, args, model, why):
    """``pytest --pyargs resstream_assert.suite --resstream-model zoo:cifar-resnet20-synth32 --resstream-claims
    C11`` (and a 5-image probe, all-zero weights, featviz with 0 steps) exited 0 without a word."""
    torch.save({k: torch.zeros_like(v) for k, v in architectures.resnet20().state_dict().items()},
               pytester.path / "zeros.pth")
    code, out = _run(pytester, *args, model=model)
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "resstream: NOTHING WAS DECIDED; a run that decides nothing checked nothing, so it fails" in out
    assert why in out
    code, out = _run(pytester, *args, "--resstream-survey", model=model)
    assert code == pytest.ExitCode.OK and "NOTHING WAS DECIDED (survey mode" in out and why in out, out


def test_a_run_that_decides_something_passes_in_survey_mode_without_the_line(pytester):
    code, out = _run(pytester, "--resstream-survey")
    assert code == pytest.ExitCode.OK and "NOTHING WAS DECIDED" not in out, out
    assert "fails" in out  # C1 and C3 are decided (they fail on this model: xfailed in survey mode)


# --- 6: an incomplete baseline ---------------------------------------------------------------------------

def test_update_baseline_refuses_a_baseline_without_a_model_that_errored(pytester):
    """``... --resstream-model zoo:cifar-resnet20-synth32 --resstream-model tests.test_gate_holes:broken_resnet20
    --resstream-baseline b.json --resstream-update-baseline``: the broken model's tests error."""
    code, out = _run(pytester, "--resstream-model", "tests.test_gate_holes:broken_resnet20",
                     "--resstream-input-size", "32", "--resstream-baseline", "b.json", "--resstream-update-baseline",
                     "--resstream-survey")
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "produced non-finite responses" in out
    assert "resstream: baseline b.json NOT written: 3 test(s) failed or errored (first: test_claims.py" in out
    assert "model tests.test_gate_holes:broken_resnet20[torch] has no claim result" in out
    assert not (pytester.path / "b.json").exists()


# --- 7: cache entries are checked, not trusted -----------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    from resstream_assert.discovery import discover
    from resstream_assert.pipeline import load_model
    from resstream_assert.stimuli.probe import embedded_probe

    loaded = load_model(CIFAR)
    return loaded, discover(loaded), embedded_probe(n=16, size=32)


def _capture(small, cache):
    from resstream_assert.capture import capture

    loaded, rmap, probe = small
    return capture(loaded, rmap, probe, cache=cache, progress=False)["id"]


def test_a_planted_all_nan_cache_entry_is_the_model_s_non_finite_error(small, tmp_path):
    """An all-NaN entry under the right key (checksum and all) made every claim inconclusive, exit 0."""
    from resstream_assert.capture.cache import ResponseCache

    fresh = _capture(small, ResponseCache(tmp_path))  # control: computed, stored, read back equal
    assert np.array_equal(_capture(small, ResponseCache(tmp_path)).center["3/branch_out"], fresh.center["3/branch_out"])
    (entry,) = tmp_path.glob("*.npz")
    key = entry.stem
    nan = type(fresh)(fresh.variant, {k: np.full_like(v, np.nan) for k, v in fresh.center.items()},
                      {k: np.full_like(v, np.nan) for k, v in fresh.mean.items()}, fresh.logits)
    nan.save(entry, key=key)
    with pytest.raises(CaptureError, match=r"produced non-finite responses \(NaN or inf\) to the probe images"):
        _capture(small, ResponseCache(tmp_path))


@pytest.mark.parametrize("tamper", ["permute", "other_key", "no_checksum"])
def test_a_cache_entry_not_written_for_its_key_or_changed_is_recomputed_with_a_warning(small, tmp_path, tamper):
    """A permuted but valid entry flipped C1 from fails to holds."""
    from resstream_assert.capture.cache import ResponseCache

    fresh = _capture(small, ResponseCache(tmp_path))
    (entry,) = tmp_path.glob("*.npz")
    with np.load(entry) as z:
        arrays = {n: z[n] for n in z.files}
    if tamper == "permute":  # rows of every array shuffled; the stored checksum is left as it was
        order = np.random.default_rng(0).permutation(16)
        arrays = {n: (a[order] if n.startswith(("center|", "mean|")) else a) for n, a in arrays.items()}
        np.savez(entry, **arrays)
    elif tamper == "other_key":  # a sound entry of another key, copied under this one
        fresh.save(entry, key="0" * 64)
    else:
        np.savez(entry, **{n: a for n, a in arrays.items() if not n.startswith("__")})
    cache = ResponseCache(tmp_path)
    with pytest.warns(ResstreamWarning, match=r"cache entry .* is not trusted .*discarded and is recomputed"):
        again = _capture(small, cache)
    assert cache.misses == 1 and cache.hits == 0
    for k in fresh.center:
        assert np.array_equal(again.center[k], fresh.center[k])


# --- silently wrong numbers, and the safe route for a harmless checkpoint ---------------------------------

def _onnx(path, dims):
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)
    g = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g", [x], [y])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_a_dynamic_size_onnx_model_says_its_size_was_guessed(tmp_path):
    """A dynamic-H/W ONNX ran at 224 px with no word, and its numbers differ from the trained size's."""
    import warnings

    from resstream_assert.pipeline import load_model

    path = _onnx(tmp_path / "dyn.onnx", ["N", 3, "H", "W"])
    with pytest.warns(ResstreamWarning, match=r"dyn\.onnx: input size 224 px, guessed: the graph's height and width"):
        assert load_model(path).input_size_guessed
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResstreamWarning)  # controls: a given size, a fixed graph, say nothing
        assert load_model(path, input_size=32).input_size == 32
        assert load_model(_onnx(tmp_path / "fixed.onnx", ["N", 3, 40, 40])).input_size == 40


@pytest.mark.parametrize("field, value, match", [
    ("stimuli", "banana", "--resstream-stimuli banana: must be one of exemplars, featviz, both"),
    ("engine", "tensorrt", "--resstream-engine tensorrt: must be auto, torch or onnxruntime"),
    ("shard", (5, 2), "--resstream-shard 5/2: must be I/N"),
    ("channels", -4, "--resstream-channels -4: must be a positive whole number"),
    ("images", "512", "--resstream-images 512: must be a whole number"),
    ("stability", 1, "--resstream-stability 1: must be 0 \\(off\\) or from 36"),
    ("featviz", {"size": 30000}, "--resstream-featviz-size 30000"),
    ("claim_options", {"alpha": 2.0}, "--resstream-alpha 2.0"),
    ("claim_options", {"intervention": {"factors": (0.25, 1, 1e300)}}, "1e\\+300 is outside"),
])
def test_the_python_api_checks_values_as_the_options_do(field, value, match):
    """``analyze(config=RunConfig(stimuli='banana', engine='tensorrt', shard=(5, 2), channels=-4))`` returned results."""
    from resstream_assert.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match=match):
        RunConfig(models=(CIFAR,), **{field: value})


def test_the_stability_minimum_is_the_clopper_pearson_bound_of_the_threshold():
    from resstream_assert.claims.verdict_stability import STABILITY_THRESHOLD
    from resstream_assert.config.checks import stability_min_runs
    from resstream_assert.stats.effects import clopper_pearson

    n = stability_min_runs()
    assert clopper_pearson(0, n)[1] <= STABILITY_THRESHOLD < clopper_pearson(0, n - 1)[1]


def test_a_weights_path_with_a_space_works_with_sites_and_the_safe_globals_route_loads_lightning(tmp_path, capsys):
    """``resstream sites 'W@my weights.ckpt'`` named --resstream-label, which sites has not; a Lightning
    checkpoint with an argparse.Namespace loads with --safe-globals argparse.Namespace (nothing else runs)."""
    import argparse

    state = checkpoints.state_of(checkpoints.trained_like())
    path = tmp_path / "my weights.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()},
                "hyper_parameters": {"args": argparse.Namespace(lr=0.1)}}, path)
    assert cli_main(["sites", f"{W}@{path}", "--input-size", "32"]) == 2  # control: refused without the class
    assert "--safe-globals argparse.Namespace" in capsys.readouterr().err
    assert cli_main(["sites", f"{W}@{path}", "--input-size", "32", "--safe-globals", "argparse.Namespace"]) == 0
    out = capsys.readouterr().out
    assert f"{W}@my_weights.ckpt: 9 residual blocks, input 32px" in out and "key 'state_dict', prefix 'model.'" in out


def test_merge_allow_incomplete_merges_loudly(tmp_path, capsys):
    """``resstream report merge shard1.json --allow-incomplete``: merged, marked, and said on stderr."""
    from resstream_assert.report.collect import ReportCollector, read_report, write_report
    from tests.report_synth import make_result

    col = ReportCollector(config={"models": ["r18", "r50"], "seed": 0, "shard": [1, 2]}, seed=0)
    col.add(make_result("r18", "C3"), "t.py::test[r18-C3]")
    write_report(col.to_json(), tmp_path / "s1.json")
    assert cli_main(["report", "merge", str(tmp_path / "s1.json"), "--json", str(tmp_path / "m.json")]) == 2
    assert not (tmp_path / "m.json").exists()
    assert cli_main(["report", "merge", str(tmp_path / "s1.json"), "--json", str(tmp_path / "m.json"),
                     "--allow-incomplete"]) == 0
    err = capsys.readouterr().err
    assert "resstream: WARNING: incomplete run merged (--allow-incomplete): shard 2/2 is missing" in err
    assert read_report(tmp_path / "m.json")["incomplete"] == ["shard 2/2 is missing",
                                                               "model r50 has no result in any report"]
