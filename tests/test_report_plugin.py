"""The report hooks end to end through pytester: results recorded by ``resstream_record`` in a
synthetic test file (no model) become the terminal summary, JSON/Markdown/HTML files and the
baseline gate, serially and under pytest-xdist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resstream_assert.report.collect import strip_volatile
from tests import report_synth
from tests.test_report import _decode_pngs, assert_valid_gfm_tables

SYNTH = Path(report_synth.__file__).read_text()

TEST_SRC = """
import pytest
from synth import make_result

MODELS = {models!r}
SHIFT = {shift!r}

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("claim", ["C3", "C10"])
def test_claim(model, claim, resstream_record):
    first = (model, claim) == (MODELS[0], "C3")
    resstream_record(make_result(model, claim, block_shift=SHIFT if first else None,
                                 with_figures={figures} and first))
"""


def _write(pytester: pytest.Pytester, models=("r18", "r50"), shift=None, figures=False) -> None:
    pytester.makepyfile(synth=SYNTH, test_claims=TEST_SRC.format(models=list(models), shift=shift or {},
                                                                 figures=figures))


def test_serial_and_xdist_reports_are_identical_apart_from_timing(pytester):
    _write(pytester)
    serial = pytester.runpytest_subprocess("--resstream-report-json", "serial.json")
    serial.assert_outcomes(passed=4)
    xdist = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--resstream-report-json", "xdist.json")
    xdist.assert_outcomes(passed=4)
    a, b = (json.loads((pytester.path / f).read_text()) for f in ("serial.json", "xdist.json"))
    assert len(a["results"]) == 4 and a["volatile_keys"] == ["datetime", "duration_s"]
    assert strip_volatile(a) == strip_volatile(b)


def test_gate_fails_the_drifting_test_under_xdist(pytester):
    _write(pytester)
    pytester.runpytest("--resstream-baseline", "baselines/r.json", "--resstream-update-baseline").assert_outcomes(
        passed=4)
    _write(pytester, shift={"layer3.0": 0.2})
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--resstream-baseline", "baselines/r.json",
                                           "--resstream-compare-fail", "rho:abs>0.1")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*BaselineDriftError: residual-stream statistics drifted from the baseline*",
                                 r"r18?torch?*C3*layer3.0*rho*-0.28*-0.08*+0.2*abs>0.1*FAIL",
                                 "*resstream baseline FAILED*",
                                 "FAILED test_claims.py::test_claim?C3-r18? - BaselineDriftError*"])


def test_update_baseline_writes_it_then_unchanged_passes_and_drift_fails(pytester):
    _write(pytester, figures=True)
    result = pytester.runpytest("--resstream-baseline", "baselines/r.json", "--resstream-update-baseline")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["resstream: baseline written to baselines/r.json (4 claim results)"])
    base = json.loads((pytester.path / "baselines" / "r.json").read_text())
    assert len(base["results"]) == 4 and all("figures" not in r for r in base["results"])

    gate = ("--resstream-baseline", "baselines/r.json", "--resstream-compare-fail", "verdict",
            "--resstream-compare-fail", "rho:abs>0.1")
    same = pytester.runpytest(*gate)
    same.assert_outcomes(passed=4)
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*resstream baseline passed*", "no differences beyond tolerance*"])

    _write(pytester, shift={"layer2.0": 0.05, "layer3.0": 0.2}, figures=True)
    drift = pytester.runpytest(*gate, "--resstream-report-json", "r.json")
    drift.assert_outcomes(passed=3, failed=1)
    out = drift.stdout.str()
    assert "layer3.0" in out and "rho" in out and "layer2.0  rho" not in out  # only the block past tolerance
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["baseline"]["failed"] is True
    fails = [(e["claim"], e["block"], e["quantity"]) for e in report["baseline"]["entries"] if e["status"] == "FAIL"]
    assert fails == [("C3", "layer3.0", "rho")]


def test_a_failing_claim_test_gets_the_diff_as_a_section(pytester):
    _write(pytester, models=("r18",))
    pytester.runpytest("--resstream-baseline", "b.json", "--resstream-update-baseline").assert_outcomes(passed=2)
    pytester.makepyfile(test_claims="""
from synth import make_result

def test_claim(resstream_record):
    resstream_record(make_result("r18", "C3", verdict="fails"))
    assert False, "claim C3 fails"
""")
    result = pytester.runpytest("--resstream-baseline", "b.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: claim C3 fails*", "*resstream baseline diff*",
                                 "r18?torch?*C3*(claim)*verdict*holds*fails*changed*beyond noise*FAIL"])
    # The suite records a report-only claim and then skips: a verdict drift (holds -> fails: always beyond the
    # noise) must still fail it.
    pytester.makepyfile(test_claims="""
import pytest
from synth import make_result

def test_claim(resstream_record):
    resstream_record(make_result("r18", "C3", verdict="fails"))
    pytest.skip("C3 is report-only here")
""")
    skipped = pytester.runpytest("--resstream-baseline", "b.json")
    skipped.assert_outcomes(failed=1)
    skipped.stdout.fnmatch_lines(["*holds*fails*changed*FAIL",
                                  "(the test itself skipped: Skipped: C3 is report-only here)"])


def test_missing_claims_fail_the_session_only_with_the_missing_rule(pytester):
    _write(pytester, models=("r18",))
    pytester.runpytest("--resstream-baseline", "b.json", "--resstream-update-baseline").assert_outcomes(passed=2)
    lenient = pytester.runpytest("-k", "C3", "--resstream-baseline", "b.json")
    lenient.assert_outcomes(passed=1, deselected=1)
    assert lenient.ret == 0
    lenient.stdout.fnmatch_lines(["*C10*(claim)*claim*present*-*missing*"])
    strict = pytester.runpytest("-k", "C3", "--resstream-baseline", "b.json", "--resstream-compare-fail", "missing")
    strict.assert_outcomes(passed=1, deselected=1)
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["*C10*(claim)*claim*FAIL (missing)*",
                                 "resstream: the baseline comparison failed although every test passed*"])


@pytest.mark.parametrize("args, message", [
    (("--resstream-baseline", "b.json", "--resstream-compare-fail", "rho>0.1"),
     "*invalid --resstream-compare-fail expression 'rho>0.1': expected verdict | missing | decided | NAME:abs>LIMIT*"),
    (("--resstream-compare-fail", "effect:abs>big"), "*invalid --resstream-compare-fail expression 'effect:abs>big'*"),
    (("--resstream-baseline", "nowhere.json",), "*--resstream-baseline nowhere.json: no such file*"),
    (("--resstream-update-baseline",), "*--resstream-update-baseline needs --resstream-baseline PATH*"),
])
def test_usage_errors(pytester, args, message):
    _write(pytester, models=("r18",))
    (pytester.path / "b.json").write_text('{"results": []}')
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_terminal_summary_shows_the_table_and_with_two_models_the_matrix(pytester):
    _write(pytester)
    result = pytester.runpytest()
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*= resstream claims (seed 0): 4 of 4 gated claims hold, 0 fail, 0 undecided =*",
                                 "model[[]backend]*claim*verdict*effect [[]95% CI]*p_adj*n",
                                 "r18[[]torch]*C3*holds*-0.300 [[]-0.400, -0.200]*0.0040*256*",
                                 "r50[[]torch]*C10*holds*",
                                 "*cross-architecture matrix: one row per model and backend*",
                                 "model[[]backend]*C3*C10",
                                 "r18[[]torch]*holds*holds",
                                 "r50[[]torch]*holds*holds"])
    _write(pytester, models=("r18",))
    one = pytester.runpytest()
    assert "resstream claims" in one.stdout.str() and "cross-architecture matrix" not in one.stdout.str()


def test_unrelated_tests_get_no_summary_and_no_files(pytester):
    pytester.makepyfile("def test_ok():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "resstream claims" not in out and "resstream report" not in out and "resstream baseline" not in out
    assert sorted(p.suffix for p in pytester.path.iterdir() if not p.name.startswith(".")) == [".py"]


def test_report_files_md_html_json(pytester):
    _write(pytester, figures=True)
    result = pytester.runpytest("--resstream-report-json", "out/r.json", "--resstream-report-md", "out/r.md",
                                "--resstream-report-html", "out/r.html", "--resstream-report-figures", "out/figs")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["resstream report: *r.json", "resstream report: *r.md",
                                 "resstream report: *figs (4 PNG figures)", "resstream report: *r.html"])
    out = pytester.path / "out"
    assert assert_valid_gfm_tables((out / "r.md").read_text()) == 3  # two models + matrix
    images = _decode_pngs((out / "r.html").read_text())
    assert len(images) == 4 and all(i.shape[0] > 150 and i.shape[1] > 200 and i[..., :3].std() > 0.01
                                    for i in images)
    assert sorted(p.name for p in (out / "figs").iterdir())[0] == "r18_torch_C3_ablation.png"


@pytest.mark.parametrize("xdist", [[], ["-p", "xdist", "-n", "2"]])
def test_junit_xml_gets_a_one_line_summary_not_the_whole_result(pytester, xdist):
    _write(pytester, figures=True)
    xml = pytester.path / "junit.xml"
    json_path = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(f"--junitxml={xml}", f"--resstream-report-json={json_path}", *xdist)
    result.assert_outcomes(passed=4)
    text = xml.read_text()
    assert 'name="resstream_claim" value="C3 holds' in text
    assert "panels" not in text  # no figure data in the XML
    report = json.loads(json_path.read_text())
    assert any(r["figures"] for r in report["results"])  # ...while the JSON report still has it
