"""Reports from synthetic ClaimResults: JSON round trip, collector, baseline diff, rule grammar,
Markdown validity, HTML figures and the terminal tables. No model, no pytest run inside."""

from __future__ import annotations

import base64
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from resstream_assert.gate import baseline as bl
from resstream_assert.report.collect import ReportCollector, read_report, strip_volatile, write_report
from resstream_assert.report.html import render_html
from resstream_assert.report.markdown import md_table, render_markdown
from resstream_assert.report.terminal import claims_table, matrix_table, plain
from resstream_assert.results import ClaimResult
from tests.report_synth import make_result


def _report(*results, config=None) -> dict:
    c = ReportCollector(config=config or {"models": ["r18", "r50"], "seed": 0})
    for i, r in enumerate(results):
        c.add(r, f"test_claims.py::test_{i}")
    return c.to_json()


def test_json_round_trip(tmp_path):
    results = [make_result("r18", "C3", with_figures=True), make_result("r18", "C10", verdict="fails", gate=False)]
    path = write_report(_report(*results), tmp_path / "out" / "report.json")
    back = read_report(path)
    for key in ("resstream_assert", "versions", "machine", "seed", "config", "datetime", "duration_s", "models",
                "backends", "results"):
        assert key in back
    assert back["models"] == ["r18"] and back["backends"] == ["torch"] and back["seed"] == 0
    assert back["results"][0]["nodeid"].startswith("test_claims.py::")
    assert [ClaimResult.from_dict(d).to_dict() for d in back["results"]] == [r.to_dict() for r in results]
    assert back["results"][0]["values"]["n_undefined"] is None  # NaN survives as null, not as invalid JSON


def test_collector_dedupes_across_phases_and_tests_and_sorts():
    c = ReportCollector(config={"models": ["r50", "r18"]})
    res = [make_result(m, cl).to_dict() for m in ("r18", "r50") for cl in ("C10", "C2")]
    for when in ("setup", "call", "teardown"):  # pytest copies user_properties into every phase's report
        for d in res:
            c.add_report(SimpleNamespace(nodeid=f"t.py::test[{d['model']}-{d['claim']}]",
                                         user_properties=[["resstream_claim", d], ("other", 1)]))
    c.add(make_result("r18", "C2", rho=-0.9), "t.py::a_first")  # a second test recording the same claim
    c.add(make_result("r18", "C2", rho=-0.1), "t.py::z_last")
    order = [(d["model"], d["claim"]) for d in c.results()]
    assert order == [("r50", "C2"), ("r50", "C10"), ("r18", "C2"), ("r18", "C10")]  # config order, natural ids
    kept = next(d for d in c.results() if (d["model"], d["claim"]) == ("r18", "C2"))
    assert kept["nodeid"] == "t.py::a_first" and kept["effect"] == -0.9
    assert c.to_json()["duplicates"][0]["claim"] == "C2"


def test_strip_volatile_leaves_the_rest():
    rep = _report(make_result())
    assert set(rep) - set(strip_volatile(rep)) == {"datetime", "duration_s"}


# --- baseline --------------------------------------------------------------------------------

def test_baseline_unchanged_passes():
    rep = _report(make_result("r18", "C3"), make_result("r18", "C5"))
    diff = bl.compare(rep, rep, ["verdict", "rho:abs>0.1", "frac_skip:abs>0.05", "effect:pct>20"])
    assert diff.failed is False and not diff.failures()
    assert "no differences beyond tolerance" in diff.table()


def test_baseline_fails_when_one_quantity_drifts_and_names_it():
    base = _report(make_result("r18", "C3"), make_result("r18", "C5"))
    now = _report(make_result("r18", "C3", block_shift={"layer3.0": 0.15}), make_result("r18", "C5"))
    diff = bl.compare(base, now, ["verdict", "rho:abs>0.1"], baseline_path="baselines/r18.json")
    assert diff.failed is True
    (fail,) = diff.failures()
    assert (fail.claim, fail.block, fail.quantity, fail.change, fail.tolerance) == ("C3", "layer3.0", "rho",
                                                                                 "+0.15", "abs>0.1")
    table = diff.table()
    assert re.search(r"r18\[torch\]\s+C3\s+layer3\.0\s+rho\s+-0\.28\s+-0\.13\s+\+0\.15\s+abs>0\.1\s+FAIL", table)
    assert bl.compare(base, now, ["rho:abs>0.2"]).failed is False  # within a looser tolerance
    with pytest.raises(bl.BaselineDriftError, match=r"layer3\.0.*rho"):
        bl.check(now["results"][0], base, ["rho:abs>0.1"])


def test_pct_rule_verdict_rule_and_report_only_claims():
    base = _report(make_result("r18", "C3", rho=-0.3), make_result("r18", "C4", gate=False))
    now = _report(make_result("r18", "C3", rho=-0.36), make_result("r18", "C4", gate=False, verdict="fails"))
    diff = bl.compare(base, now, ["verdict", "effect:pct>10"])
    c3 = [e for e in diff.failures() if e.claim == "C3" and e.block == ""]
    assert c3 and c3[0].change == "-20%" and c3[0].quantity == "effect"
    c4 = [e for e in diff.entries if e.claim == "C4" and e.quantity == "verdict"]
    assert {e.status for e in c4} == {"warn"}  # report-only claims never fail the gate
    assert bl.compare(base, now, ["effect:pct>25"]).failed is False


def test_nan_and_missing_on_either_side_are_reported_not_crashed_on():
    base = _report(make_result("r18", "C3"), make_result("r18", "C7"))
    c3_now = make_result("r18", "C3", rho=float("nan")).to_dict()
    c3_now["rows"] = c3_now["rows"][:3]  # a block disappeared
    now = {"results": [c3_now, make_result("r18", "C9").to_dict()]}
    diff = bl.compare(base, now, ["verdict", "rho:abs>0.1"])
    statuses = {(e.claim, e.block, e.quantity): e.status for e in diff.entries}
    assert statuses[("C3", "", "rho")] == "FAIL"  # defined -> undefined is a drift
    assert statuses[("C3", "layer4.0", "block")] == "missing"
    assert statuses[("C7", "", "claim")] == "missing" and statuses[("C9", "", "claim")] == "new"
    assert "missing" in diff.table() and "became undefined" in diff.table()
    strict = bl.compare(base, now, ["missing"])
    assert {(e.claim, e.block) for e in strict.failures()} == {("C3", "layer4.0"), ("C7", ""), ("C9", "")}


def test_single_models_are_paired_across_releases():
    base = _report(make_result("resnet18@v1.pth", "C3"))
    now = _report(make_result("resnet18@v2.pth", "C3", verdict="fails"))
    diff = bl.compare(base, now, ["verdict"])
    assert diff.failed and "compared with baseline model resnet18@v1.pth[torch]" in diff.table()
    assert bl.compare_result(now["results"][0], base, ["verdict"], run_models=["resnet18@v2.pth"]).failed
    two = bl.compare_result(now["results"][0], base, run_models=["resnet18@v2.pth", "resnet50"])
    assert not two.failed and two.entries[0].status == "new"  # ambiguous: no pairing


def test_diff_has_no_truth_value_and_round_trips():
    rep = _report(make_result())
    diff = bl.compare(rep, rep, ["verdict", "rho:abs>0.1"])
    with pytest.raises(TypeError, match="failed"):
        bool(diff)
    assert bl.BaselineDiff.from_dict(json.loads(json.dumps(diff.to_dict()))) == diff


@pytest.mark.parametrize("expr", ["rho", "rho>0.1", "rho:abs<0.1", "rho:rel>0.1", ":abs>0.1", "rho:abs>",
                                  "rho:abs>-1", "rho:abs>x", "verdicts", "1rho:abs>0.1", "rho:abs>0.1%", ""])
def test_bad_compare_fail_expressions_are_usage_errors(expr):
    """A CompareFailError (a ConfigError: pytest's plugin turns it into a usage error, exit 4)."""
    from resstream_assert.errors import CompareFailError, ConfigError

    assert issubclass(CompareFailError, ConfigError)
    with pytest.raises(CompareFailError) as info:
        bl.parse_rule(expr)
    assert repr(expr) in str(info.value) and "NAME:abs>LIMIT" in str(info.value)


@pytest.mark.parametrize("expr, rule", [("verdict", bl.Rule("verdict")), ("missing", bl.Rule("missing")),
                                        ("rho:abs>0.1", bl.Rule("abs", "rho", 0.1)),
                                        ("frac_scale_inv:pct>20", bl.Rule("pct", "frac_scale_inv", 20.0)),
                                        (" p_adjusted:abs>2e-1 ", bl.Rule("abs", "p_adjusted", 0.2))])
def test_good_compare_fail_expressions(expr, rule):
    assert bl.parse_rule(expr) == rule


def test_baseline_form_drops_figures():
    rep = _report(make_result(with_figures=True))
    rep["baseline"] = {"x": 1}
    base = bl.baseline_from_report(rep)
    assert "figures" not in base["results"][0] and "baseline" not in base and "figures" in rep["results"][0]


# --- Markdown ----------------------------------------------------------------------------------

def _split_row(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line[1:-1])  # a cell boundary is a pipe not escaped by a backslash


def assert_valid_gfm_tables(md: str) -> int:
    """Every table: header, separator row, then rows with the header's number of cells."""
    lines, n_tables, i = md.splitlines(), 0, 0
    while i < len(lines):
        if lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            width = len(_split_row(block[0]))
            assert len(block) >= 2 and all(re.fullmatch(r"\s*:?-{3,}:?\s*", c) for c in _split_row(block[1])), block
            assert all(len(_split_row(row)) == width for row in block), block
            n_tables += 1
        i += 1
    return n_tables


def test_markdown_tables_are_valid():
    base = _report(make_result("r18", "C3"), make_result("r50", "C3"))
    now = _report(make_result("r18", "C3", block_shift={"layer2.0": 0.3}), make_result("r50", "C3"),
                  make_result("r50", "C11", verdict="inconclusive", gate=False))
    now["baseline"] = bl.compare(base, now, ["verdict", "rho:abs>0.1"], baseline_path="b.json").to_dict()
    md = render_markdown(now)
    assert assert_valid_gfm_tables(md) == 4  # baseline diff, two models, matrix
    assert "skip channels \\| low gain" in md and "❌ **baseline gate failed**" in md
    assert "### Cross-architecture matrix" in md and "| r50[torch] | ✅ holds | ⚠️ inconclusive |" in md
    assert assert_valid_gfm_tables(md_table(["a", "b", "c"], [["1"], ["x|y", "2", "3", "extra"]])) == 1


# --- HTML and figures ----------------------------------------------------------------------------

def _decode_pngs(page: str) -> list[np.ndarray]:
    from matplotlib import image as mpimg

    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [mpimg.imread(io.BytesIO(base64.b64decode(u)), format="png") for u in uris]


def test_html_is_self_contained_and_renders_every_figure_type():
    rep = _report(make_result("r18", "C3", with_figures=True, images=True),
                  make_result("r50", "C3").with_(reason="a <script> & c"))
    page = render_html(rep)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r'(src|href)="(https?:|//|[^"#d][^"]*\.(css|js|png))', page)  # no external assets
    images = _decode_pngs(page)
    assert len(images) == 5  # hist, scatter, bars, lines, images
    for img in images:
        assert img.shape[0] > 150 and img.shape[1] > 200 and float(img[..., :3].std()) > 0.01
    assert "Cross-architecture matrix" in page and "<h2>Summary</h2>" in page
    # the answer first: the tally, then the matrix, then the summary and the sections
    assert page.index("2 of 2 gated claims hold, 0 fail, 0 undecided") < page.index("Cross-architecture matrix") \
        < page.index("<h2>Summary</h2>") < page.index('<h3 id="r-r18')
    assert "a <script>" not in page and "a &lt;script&gt; &amp; c" in page  # result text is escaped


def test_a_bad_figure_is_reported_not_fatal():
    res = make_result("r18", "C3", with_figures=True).to_dict()
    res["figures"] = {"scale_inv": res["figures"]["scale_inv"], "broken": {"type": "pie", "panels": []}}
    page = render_html({"results": [res]})
    assert "figure broken could not be drawn" in page and len(_decode_pngs(page)) == 1


# --- terminal ----------------------------------------------------------------------------------

def test_terminal_tables():
    rep = _report(make_result("r18", "C3"), make_result("r50", "C3", verdict="fails"),
                  make_result("r50", "C12", verdict="not_applicable", gate=False))
    lines = [plain(line) for line in claims_table(rep)]
    assert lines[0].split() == ["model[backend]", "claim", "verdict", "effect", "[95%", "CI]", "p_adj", "n"]
    c12 = next(i for i, line in enumerate(lines) if line.startswith("r50[torch]      C12"))
    assert re.match(r"r50\[torch\]\s+C12\s+not_applicable\s+-0\.300 \[-0\.400, -0\.200\]\s+0\.0040\s+256\s+"
                    r"Claim C12", lines[c12])  # not registered: the result's own title, no unit
    assert lines[c12 + 1] == "    report-only"
    # C3's title and unit from the registry (the title does not fit beside the numbers at 120 columns)
    assert lines[3:5] == ["    Skip channels have lower branch gain (|gamma| of the branch's last norm)",
                          "    effect: Spearman rho of M with the branch gain (holds < -0.1)"]
    verdict_seg = claims_table(rep)[5][2]
    assert verdict_seg[0].strip() == "fails" and verdict_seg[1].get("red")
    mat = [plain(line) for line in matrix_table(rep)]
    assert mat[0].split() == ["model[backend]", "C3", "C12"]
    assert mat[2].split() == ["r18[torch]", "holds", "-"] and mat[3].split() == ["r50[torch]", "FAILS", "n/a"]


def test_example_workflow_is_valid_and_uses_existing_options():
    from pathlib import Path

    from resstream_assert.config import OPTIONS

    yaml = pytest.importorskip("yaml")
    text = (Path(__file__).resolve().parents[1] / "examples" / "github-actions-release-gate.yml").read_text()
    steps = yaml.safe_load(text)["jobs"]["claims"]["steps"]
    assert any("upload-artifact" in s.get("uses", "") for s in steps)
    used = set(re.findall(r"--resstream-([a-z-]+)", text))
    assert used <= {o.name for o in OPTIONS}
    assert {"baseline", "compare-fail", "report-md", "report-html", "update-baseline"} <= used
    for expr in re.findall(r"--resstream-compare-fail '?([^\s']+)'?", text):
        bl.parse_rule(expr)


def test_a_rule_naming_no_quantity_fails_instead_of_comparing_nothing():
    base = {"results": [make_result("r18", "C3").to_dict()]}
    assert bl.unknown_quantities(["verdict", "rho:abs>0.1", "nosuchquantity:abs>0.1"], base) == ["nosuchquantity"]
    diff = bl.compare(base, base, ["nosuchquantity:abs>0.1"])
    assert diff.failed and [e.quantity for e in diff.failures()] == ["nosuchquantity"]
    assert "no claim or block has this quantity" in diff.table()
    assert not bl.compare(base, base, ["rho:abs>0.1"]).failed


def test_sharded_example_workflow_uses_existing_options_and_merge_flags():
    """The README's many-checkpoints example: shard flags, the merge command and its gate rules all exist."""
    from pathlib import Path

    import shlex

    from resstream_assert.cli import build_parser
    from resstream_assert.config import OPTIONS

    yaml = pytest.importorskip("yaml")
    text = (Path(__file__).resolve().parents[1] / "examples" / "github-actions-sharded.yml").read_text()
    jobs = yaml.safe_load(text)["jobs"]
    shards = jobs["shard"]["strategy"]["matrix"]["shard"]
    assert f"/{len(shards)}" in text and jobs["merge"]["needs"] == "shard"
    assert set(re.findall(r"--resstream-([a-z-]+)", text)) <= {o.name for o in OPTIONS}
    merge = next(s["run"] for s in jobs["merge"]["steps"] if "report merge" in s.get("run", ""))
    for expr in re.findall(r"--compare-fail '?([^\s']+)'?", merge):
        bl.parse_rule(expr)
    argv = shlex.split(merge.replace("$BASELINE", "baseline.json"))
    assert argv[:3] == ["resstream", "report", "merge"]
    args = build_parser().parse_args(argv[1:])  # an unknown flag would exit with status 2 here
    assert args.baseline == "baseline.json" and args.html == "report.html"
