"""Claims on captured responses, verdict stability over probe half-samples and seeds, and how it reaches the user.

Synthetic responses (calibration.generator) plant a known C3 effect: a strong one must be
stable, a borderline one must flip, the null must fail stably.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calibration.generator import Effects, synthetic_responses
from resstream_assert.claims import ClaimOptions
from resstream_assert.claims.verdict_stability import (STABILITY_THRESHOLD, evaluate_responses, response_claims,
                                               verdict_stability)
from resstream_assert.config import ConfigError, build_run_config
from resstream_assert.report._common import stability_text
from resstream_assert.report.html import render_html
from resstream_assert.report.markdown import render_markdown
from resstream_assert.results import ClaimResult, Verdict

ROOT = Path(__file__).resolve().parents[1]
FAST = ClaimOptions(n_resamples=999, n_boot=0)


def _stability(rho: float, channels: int, seed: int = 0, runs: int = 10, images: int = 256):
    rmap, resp = synthetic_responses(seed, n_images=images, channels=channels, effects=Effects(gain_rho=rho))
    full = evaluate_responses(rmap, resp, ["C3"], options=FAST, seed=seed)
    return full["C3"], verdict_stability(rmap, resp, full, runs=runs, options=FAST, seed=seed)["C3"]


def test_a_strong_effect_holds_stably():
    full, s = _stability(-0.8, 64)
    assert full.verdict == Verdict.HOLDS
    assert s["flips"] == 0 and s["unstable"] == 0.0 and s["holds"] == s["runs"] == 10
    assert s["n_images"] == 128 and s["of_images"] == 256 and s["ci_low"] == 0.0 < s["ci_high"] < 0.35


def test_the_null_fails_stably():
    full, s = _stability(0.0, 64)
    assert full.verdict == Verdict.FAILS
    assert s["fails"] == s["runs"] and s["flips"] == 0 and s["unstable"] == 0.0


def test_a_borderline_effect_is_reported_unstable():
    full, s = _stability(-0.35, 64, seed=3)
    assert 0 < s["flips"] < s["runs"], s
    assert s["rate"] == s["flips"] / s["runs"] and s["unstable"] == float(s["rate"] > STABILITY_THRESHOLD)
    assert s["unstable"] == 1.0
    assert s["ci_low"] < s["rate"] < s["ci_high"]
    assert s[full.verdict.value] == s["runs"] - s["flips"]  # the other runs agree with the full verdict
    text = stability_text({"stability": s})
    assert text.startswith("unstable at n=256: flips in ") and "128-image halves" in text


def test_stability_is_seeded_and_checks_its_arguments():
    rmap, resp = synthetic_responses(1, n_images=128, channels=24, effects=Effects(gain_rho=-0.3))
    full = evaluate_responses(rmap, resp, ["C1", "C3"], options=FAST)
    a, b = (verdict_stability(rmap, resp, full, runs=3, options=FAST, seed=7) for _ in range(2))
    assert a == b and set(a) == {"C1", "C3"}
    with pytest.raises(ValueError, match="runs must be >= 1"):
        verdict_stability(rmap, resp, full, runs=0)
    with pytest.raises(ValueError, match="fraction"):
        verdict_stability(rmap, resp, full, runs=2, fraction=1.0)


def test_too_few_images_for_half_samples_is_said_not_counted_as_flips():
    rmap, resp = synthetic_responses(0, n_images=80, channels=16)
    full = evaluate_responses(rmap, resp, ["C1"], options=FAST)
    s = verdict_stability(rmap, resp, full, runs=5, options=FAST)["C1"]
    assert s == {"runs": 0, "n_images": 40, "of_images": 80, "min_images": 50}
    assert stability_text({"stability": s}) == "not re-evaluated: half-samples of 40 images are below min_images 50"


def test_evaluate_responses_refuses_interventions_and_missing_variants():
    rmap, resp = synthetic_responses(0, n_images=64, channels=8)
    assert response_claims(["C1", "C10", "C11"]) == ["C1"]
    with pytest.raises(ValueError, match="C10 run.* the model again"):
        evaluate_responses(rmap, resp, ["C1", "C10"])
    with pytest.raises(ValueError, match="need the stimulus variants S, Sinv, flip"):
        evaluate_responses(rmap, resp, ["C5"])
    few = evaluate_responses(rmap, {"id": resp["id"].subset(np.arange(20))}, ["C1"])["C1"]
    assert few.verdict == Verdict.INCONCLUSIVE and "20 probe images < 50" in few.reason


def test_stability_round_trips_and_shows_in_markdown():
    rmap, resp = synthetic_responses(0, n_images=128, channels=16, effects=Effects(gain_rho=-0.3))
    full = evaluate_responses(rmap, resp, ["C3"], options=FAST)
    s = verdict_stability(rmap, resp, full, runs=2, options=FAST)["C3"]
    r = full["C3"].with_(stability=s)
    back = ClaimResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.to_dict() == r.to_dict() and back.stability["runs"] == 2
    report = {"seed": 0, "config": {"stability": 2}, "results": [r.to_dict()]}
    md = render_markdown(report)
    assert "| verdict stability |" in md and f"at n=128 (flips {s['rate']:.0%})" in md
    page = render_html(report, figures=False)
    assert "<th>verdict stability</th>" in page and "Verdict stability: " in page
    unstable = r.with_(stability={**s, "flips": 2, "rate": 1.0, "unstable": 1.0}).to_dict()
    assert '<span class="s-FAIL">unstable at n=128 (flips 100%)</span>' in render_html(
        {**report, "results": [unstable]}, figures=False)
    assert "⚠️ **unstable at n=128 (flips 100%)**" in render_markdown({**report, "results": [unstable]})


def test_stability_option_is_checked_at_start_up():
    assert build_run_config({}).stability == 0
    assert build_run_config({"stability": 36}).stability == 36
    for runs in (-1, 1, 20, 1001):  # below 36, even 0 flips cannot show a verdict stable (CI upper bound > 10%)
        with pytest.raises(ConfigError, match=f"--resstream-stability {runs}"):
            build_run_config({"stability": runs})


def test_suite_reports_stability_in_terminal_and_json(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the subprocess must import tests.cifar_user_model
    result = pytester.runpytest_subprocess(
        "--pyargs", "resstream_assert.suite", "--resstream-model", "tests.cifar_user_model:resnet20",
        "--resstream-claims", "C1", "--resstream-images", "120", "--resstream-input-size", "32",
        "--resstream-stability", "36", "--resstream-survey", "--resstream-no-cache", "-p", "no:cacheprovider",
        "--resstream-report-json", "r.json")
    result.assert_outcomes(passed=2, xfailed=1)
    result.stdout.fnmatch_lines(["*verdict stability (re-evaluated on probe half-samples with other seeds)*",
                                 "*C1*fails*at n=120: flips in */36 re-evaluations*on 60-image halves, other seeds"])
    report = json.loads((pytester.path / "r.json").read_text())
    (c1,) = [r for r in report["results"] if r["claim"] == "C1"]
    assert c1["stability"]["runs"] == 36 and c1["stability"]["of_images"] == 120
    assert report["config"]["stability"] == 36
