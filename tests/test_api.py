"""One consistent Python API: ``analyze`` takes a spec or a loaded model and the options by their names, the
assertion helpers use the pytest run they are called in, ``dir()`` shows the public names, warnings come once."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import resstream_assert as ra
from resstream_assert.config import OPTION
from resstream_assert.config.run import PYTHON_OPTIONS_OF
from resstream_assert.errors import ConfigError, ResstreamWarning

ROOT = Path(__file__).resolve().parents[1]
SPEC = "tests.cifar_user_model:resnet20"


def test_analyze_takes_the_options_by_their_names():
    (few,) = ra.analyze(SPEC, claims="C1", images=40, input_size=32)
    # 40 images are below C1's floor: the claim says so, which shows the option reached the probe set
    assert few.verdict.value == "inconclusive" and "40 probe images < 50" in few.reason
    (r,) = ra.analyze(SPEC, claims=["C1"], images=64, input_size=32, engine="torch")
    assert r.claim == "C1" and r.n > 0 and "probe images <" not in r.reason  # decided on its channels, not refused


def test_analyze_takes_a_loaded_model():
    loaded = ra.load_model(SPEC, input_size=32)
    (mine,) = ra.analyze(loaded, claims=["C1"], images=64, engine="torch")
    (again,) = ra.analyze(SPEC, claims=["C1"], images=64, input_size=32, engine="torch")
    assert mine.to_dict() == again.to_dict()  # the same model, so the same numbers
    with pytest.raises(ConfigError, match=r"input_size=64: the model .* was loaded at 32 px"):
        ra.analyze(loaded, claims=["C1"], input_size=64)


def test_analyze_refuses_what_is_not_an_option():
    with pytest.raises(TypeError, match=r"analyze\(\): unknown option 'image' \(did you mean images\?\)"):
        ra.analyze(SPEC, image=64)
    with pytest.raises(ConfigError, match=r"--resstream-alpha 2: must be strictly between 0 and 1"):
        ra.analyze(SPEC, alpha=2)
    with pytest.raises(TypeError, match=r"takes a model spec .* or a model loaded by"):
        ra.analyze(3)


def test_the_signature_is_the_options_table():
    params = inspect.signature(ra.analyze).parameters
    for name in PYTHON_OPTIONS_OF:
        assert params[name.replace("-", "_")].default == OPTION[name].default
    assert {"images", "probe", "input_size", "claims", "alpha", "seed"} <= set(params)


def test_dir_lists_the_public_names_without_importing_torch():
    code = ("import sys, resstream_assert as ra; names = dir(ra); "
            "assert {'analyze', 'load_model', 'RunConfig', 'ClaimResult', 'discover'} <= set(names), names; "
            "assert 'torch' not in sys.modules; assert all(callable(getattr(ra, n)) for n in ra.__all__ "
            "if n not in ('__version__', 'REGISTRY'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_a_guessed_input_size_is_warned_once_per_model():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ra.analyze(SPEC, claims=["C1"], images=64)  # loads it for torch and for its ONNX export (engine auto)
    guessed = [w for w in caught if issubclass(w.category, ResstreamWarning) and "guessed" in str(w.message)]
    assert len(guessed) == 1, [str(w.message) for w in guessed]


HELPER_TEST = """
from resstream_assert.assertions import assert_skip_overwrite_mix_spectrum, check_claim

def test_helper_reads_the_run(resstream_ref):
    r = check_claim(resstream_ref.spec, "C1", expect="inconclusive")
    assert "40 probe images < 50" in r.reason

def test_helper_fails_with_the_table_first():
    assert_skip_overwrite_mix_spectrum("{spec}", alpha=0.01)
"""


def test_a_helper_in_a_pytest_run_uses_its_options(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(HELPER_TEST.replace("{spec}", SPEC))
    result = pytester.runpytest_subprocess("--resstream-model", SPEC, "--resstream-images", "40",
                                           "--resstream-input-size", "32", "--resstream-no-cache",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    failure = out[out.index("test_helper_fails_with_the_table_first ___"):]
    # the user's own line, then the message: no frame of the helpers, no full repr of a result
    assert "assertions.py" not in failure and "ClaimResult(" not in failure
    assert "C1 (Skip-overwrite-mix spectrum exists within blocks): expected holds, got inconclusive" in failure


def test_per_claim_minimum_effects_take_python_forms():
    from resstream_assert.config import RunConfig

    for form in ({"C3": 0.2}, ["C3=0.2"], "C3=0.2"):
        assert RunConfig().with_options(min_effect=form).claim_options["min_effect"] == ["C3=0.2"]
    with pytest.raises(ConfigError, match="is not CLAIM=VALUE"):
        RunConfig().with_options(min_effect=0.2)
