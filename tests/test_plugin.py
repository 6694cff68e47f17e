"""The pytest plugin: lazy import, options, parametrization, cache reuse and invalidation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # imported before pytester's module snapshot: a C extension cannot be imported twice

from tests.cifar_user_model import resnet20
from resstream_assert.loading.random_weights import randomize_bn

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--resstream-images", "12", "--resstream-input-size", "32"]


@pytest.fixture(autouse=True)
def _importable_test_models(monkeypatch):
    # Subprocess pytest runs start in a temp dir; `tests.cifar_user_model:resnet20` must import there.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_plugin_import_does_not_import_torch():
    code = ("import sys, resstream_assert, resstream_assert.pytest_plugin.plugin; "
            "bad = [m for m in ('torch', 'onnxruntime', 'torchvision', 'numpy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_unrelated_project_pytest_does_not_import_torch(pytester):
    pytester.makeconftest("""
import sys
def pytest_sessionfinish(session):
    assert "torch" not in sys.modules, "the resstream plugin imported torch in an unrelated project"
""")
    pytester.makepyfile("def test_ok():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess()  # the plugin is auto-loaded (pytest11 entry point)
    result.assert_outcomes(passed=1)
    assert "resstream_assert 0" not in result.stdout.str()  # no header line for an unrelated run


def test_help_lists_every_option(pytester):
    out = pytester.runpytest_subprocess("--help").stdout.str()
    for opt in ("--resstream-model", "--resstream-probe", "--resstream-images", "--resstream-batch-size",
                "--resstream-device", "--resstream-seed", "--resstream-list-sites"):
        assert opt in out


def test_models_parametrize_tests_and_header(pytester):
    pytester.makepyfile("""
def test_blocks(resstream_map, resstream_ref):
    assert len(resstream_map) == {"torchvision:resnet18": 8, "tests.cifar_user_model:resnet20": 9}[resstream_ref.spec]
""")
    result = pytester.runpytest_subprocess("--resstream-model", "torchvision:resnet18", "--resstream-model",
                                           "tests.cifar_user_model:resnet20", "-v", "--resstream-no-cache", *SMALL)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["resstream_assert *torch 2.*seed 0*",
                                 "*test_blocks?torchvision:resnet18?*PASSED*",
                                 "*test_blocks?tests.cifar_user_model:resnet20?*PASSED*"])


def test_ini_keys_work(pytester):
    pytester.makeini("[pytest]\nresstream_model = tests.cifar_user_model:resnet20\nresstream_seed = 7\n")
    pytester.makepyfile("""
def test_cfg(resstream_config, resstream_map):
    assert resstream_config.seed == 7 and len(resstream_map) == 9
""")
    pytester.runpytest_subprocess("--resstream-no-cache", *SMALL).assert_outcomes(passed=1)


def test_list_sites(pytester):
    result = pytester.runpytest_subprocess("--resstream-model", "tests.cifar_user_model:resnet20",
                                           "--resstream-list-sites", "--resstream-input-size", "32")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*9 residual blocks*", "*layer2.0*32*16x16*"])


def test_bad_spec_is_a_usage_error_before_any_test(pytester):
    pytester.makepyfile("def test_m(resstream_model):\n    pass\n")
    result = pytester.runpytest_subprocess("--resstream-model", "torchvision:resnet19", "--resstream-no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --resstream-model torchvision:resnet19: Unknown torchvision architecture*"])
    assert "test_m" not in result.stdout.str()  # models are loaded (and refused) at start-up, before any test


CACHE_TEST = """
import json, os
from resstream_assert.capture import COUNTERS

def test_capture(resstream_responses):
    with open(os.environ["RS_COUNT_FILE"], "w") as f:
        json.dump({"images": COUNTERS["images"], "n": resstream_responses.n_images}, f)
"""


def test_cache_reused_across_sessions_and_invalidated_by_weights(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(CACHE_TEST)
    count = tmp_path / "count.json"
    monkeypatch.setenv("RS_COUNT_FILE", str(count))
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(resnet20().state_dict(), weights)
    args = ["--resstream-model", f"tests.cifar_user_model:resnet20@{weights}",
            "--resstream-cache-dir", str(tmp_path / "cache"), *SMALL]

    def run() -> dict:
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
        return json.loads(count.read_text())

    assert run() == {"images": 12, "n": 12}   # first session runs the model
    assert run() == {"images": 0, "n": 12}    # second session reads the cache
    state = torch.load(weights)
    state["linear.bias"] += 1.0
    torch.save(state, weights)
    assert run() == {"images": 12, "n": 12}   # new weights: recomputed


def test_suite_gate_and_survey_modes(pytester):
    """The built-in suite on a random-init model: C1 fails its test (undecided), and in survey mode it is xfailed."""
    args = ["--pyargs", "resstream_assert.suite", "--resstream-model", "tests.cifar_user_model:resnet20",
            "--resstream-claims", "C1,C3", "--resstream-images", "64", "--resstream-input-size", "32",
            "--resstream-no-cache", "-p", "no:cacheprovider"]
    strict = pytester.runpytest_subprocess(*args)
    strict.assert_outcomes(passed=2, failed=1, skipped=1)  # structure x2; C1 undecided; C3 not_applicable
    # the message alone, the per-block table first (no suite source, no traceback); C1 is undecided at 64 images
    strict.stdout.fnmatch_lines(["C1 (Skip-overwrite-mix spectrum exists within blocks): expected holds, got *",
                                 "   block     verdict *", "*13 deselected*"])
    assert "def test_claim(" not in strict.stdout.str()
    survey = pytester.runpytest_subprocess(*args, "--resstream-survey")
    survey.assert_outcomes(passed=2, xfailed=1, skipped=1)
    assert survey.ret == 0


def test_lesion_options_are_parsed_and_checked(pytester):
    from resstream_assert.config import parse_lesion_options

    assert parse_lesion_options(["n_random=20", "blocks=layer3.1,layer2.1", "zooms=1,1.5,2"]) == {
        "n_random": 20, "blocks": ("layer3.1", "layer2.1"), "zooms": (1, 1.5, 2)}
    pytester.makepyfile("def test_x(resstream_config):\n    pass\n")
    result = pytester.runpytest_subprocess("--resstream-lesion", "nope=1", "--resstream-no-cache")
    result.stderr.fnmatch_lines(["*--resstream-lesion: Unknown lesion option 'nope'*"])
    assert result.ret != 0


def test_resstream_check_works_with_lesion_options(pytester):
    """Run-level C10 options must not leak into the claim thresholds of resstream_check."""
    pytester.makepyfile("""
import pytest

@pytest.mark.resstream(alpha=0.01)
def test_c1(resstream_check):
    with pytest.raises(AssertionError):  # C1 fails on a random-init model
        resstream_check("C1")
""")
    result = pytester.runpytest_subprocess("--resstream-model", "tests.cifar_user_model:resnet20",
                                           "--resstream-lesion", "n_random=20", *SMALL, "--resstream-images", "64",
                                           "--resstream-no-cache")
    result.assert_outcomes(passed=1)


def test_baseline_is_the_gate_unchanged_model_passes_changed_model_fails(pytester, tmp_path):
    """pytest-regressions semantics: with --resstream-baseline the same model passes; a changed model whose claim
    can no longer be shown to hold fails the run (its verdict change lies within the noise, so it is 'unstable',
    not a drift, and a run that decides no gated claim fails). Random-init ResNet-20s with BatchNorm re-drawn
    (seed 5: C1 holds at 256 images; seed 3: C1 inconclusive)."""
    args = ["--pyargs", "resstream_assert.suite", "--resstream-claims", "C1", "--resstream-images", "256",
            "--resstream-input-size", "32", "--resstream-no-cache", "-p", "no:cacheprovider", "-rx"]
    base = ["--resstream-baseline", "baselines/r20.json"]
    for seed in (5, 3):
        torch.manual_seed(0)
        torch.save(randomize_bn(resnet20(), seed=seed).state_dict(), tmp_path / f"r20_s{seed}.pth")
    release = ["--resstream-model", f"tests.cifar_user_model:resnet20@{tmp_path / 'r20_s5.pth'}"]
    write = pytester.runpytest_subprocess(*args, *release, *base, "--resstream-update-baseline")
    write.assert_outcomes(passed=3)
    assert write.ret == 0
    write.stdout.fnmatch_lines(["resstream: baseline written to baselines/r20.json (1 claim results)"])
    same = pytester.runpytest_subprocess(*args, *release, *base)
    same.assert_outcomes(passed=3)
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*resstream baseline passed*"])
    changed = pytester.runpytest_subprocess(*args, *base, "--resstream-model",
                                            f"tests.cifar_user_model:resnet20@{tmp_path / 'r20_s3.pth'}")
    assert changed.ret == 1
    changed.stdout.fnmatch_lines(["*C1*(claim)*verdict*holds*inconclusive*changed*unstable (the two intervals overlap)*",
                                  "*NOTHING WAS DECIDED*"])
    out = changed.stdout.str()
    assert "resnet20@r20_s3.pth[torch]" in out and str(tmp_path) not in out  # labels, not machine paths


def test_labels_in_reports_and_test_ids(pytester, tmp_path):
    import json

    torch.manual_seed(0)
    torch.save(resnet20().state_dict(), tmp_path / "w.pth")
    spec = f"tests.cifar_user_model:resnet20@{tmp_path / 'w.pth'}"
    common = ["--pyargs", "resstream_assert.suite", "--resstream-claims", "C2", "--resstream-images", "16",
              "--resstream-input-size", "32", "--resstream-no-cache", "-p", "no:cacheprovider", "-v"]
    auto = pytester.runpytest_subprocess(*common, "--resstream-model", spec, "--resstream-report-json", "a.json")
    auto.stdout.fnmatch_lines(["*test_claim?tests.cifar_user_model:resnet20@w.pth-C2?*"])
    report = json.loads((pytester.path / "a.json").read_text())
    assert report["config"]["models"] == ["tests.cifar_user_model:resnet20@w.pth"]
    assert {r["model"] for r in report["results"]} == {"tests.cifar_user_model:resnet20@w.pth"}
    assert str(tmp_path) not in json.dumps(report)  # no machine path in a report that may be committed
    named = pytester.runpytest_subprocess(*common, "--resstream-model", spec, "--resstream-label", "r20-v1",
                                          "--resstream-report-json", "b.json")
    named.stdout.fnmatch_lines(["*test_claim?r20-v1-C2?*", "r20-v1?torch?*C2*"])
    assert {r["model"] for r in json.loads((pytester.path / "b.json").read_text())["results"]} == {"r20-v1"}


def test_intervention_options_are_parsed_and_checked(pytester):
    from resstream_assert.config import parse_intervention_options

    assert parse_intervention_options(["factors=0.5,1,2", "channels=8", "attribution=conductance"]) == {
        "factors": (0.5, 1, 2), "channels": 8, "attribution": "conductance"}
    pytester.makepyfile("def test_x(resstream_config):\n    pass\n")
    for bad, msg in (("factors=0.5,2", "*including 1*"), ("chanels=8", "*Unknown intervention option 'chanels'*")):
        result = pytester.runpytest_subprocess("--resstream-intervention", bad, "--resstream-no-cache")
        result.stderr.fnmatch_lines([f"*--resstream-intervention: {msg}"])
        assert result.ret == 4


def test_opt_in_claims_skip_unless_selected_and_x1_reaches_the_report(pytester, tmp_path):
    base = ["--pyargs", "resstream_assert.suite", "--resstream-model", "tests.cifar_user_model:resnet20",
            "--resstream-images", "64", "--resstream-input-size", "32", "--resstream-no-cache", "-p", "no:cacheprovider"]
    opt_in = pytester.runpytest_subprocess(*base, "-k", "X3 or X4", "-rs")
    opt_in.assert_outcomes(skipped=2)
    opt_in.stdout.fnmatch_lines(["*X3 is opt-in*--resstream-claims X3*"])
    report = tmp_path / "r.json"
    run = pytester.runpytest_subprocess(*base, "--resstream-claims", "X1,X2", "--resstream-intervention", "channels=8",
                                        "--resstream-report-json", str(report), "--resstream-survey")
    assert run.ret == 0
    run.stdout.fnmatch_lines(["*X1 *", "*X2 *"])
    results = {r["claim"]: r for r in json.loads(report.read_text())["results"]}
    assert set(results) == {"X1", "X2"} and results["X1"]["source"] == "ours"
    assert results["X1"]["rows"] and "frac_flip" in results["X1"]["rows"][0]["values"]
    assert results["X1"]["figures"]["gain_dose_response"]["type"] == "lines"
