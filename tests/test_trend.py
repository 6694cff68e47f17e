"""Claims over training (``resstream trend``): one row per checkpoint per claim, in the order given."""

from __future__ import annotations

import json

import pytest

from resstream_assert.cli import main
from resstream_assert.report.trend import render_trend_html, render_trend_markdown, trend_figures, trend_rows

FACTORY = "tests.cifar_user_model:resnet20"


@pytest.fixture(scope="module")
def checkpoints(random_weights_spec):
    """Three checkpoints of a tiny CIFAR ResNet, deliberately not in seed order."""
    return [random_weights_spec(FACTORY, seed) for seed in (7, 3, 5)]


@pytest.fixture(scope="module")
def trend_json(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("trend")
    rc = main(["trend", *checkpoints, "--labels", "epoch-10,epoch-2,epoch-30", "--claims", "C3",
               "--images", "64", "--input-size", "32", "--no-cache",
               "--json", str(out / "t.json"), "--md", str(out / "t.md"), "--out", str(out / "t.html")])
    assert rc == 0
    return out


def test_one_row_per_checkpoint_per_claim_in_the_order_given(trend_json, checkpoints):
    t = json.loads((trend_json / "t.json").read_text())
    assert [c["label"] for c in t["checkpoints"]] == ["epoch-10", "epoch-2", "epoch-30"]
    assert [c["spec"] for c in t["checkpoints"]] == checkpoints
    assert [c["x"] for c in t["checkpoints"]] == [10, 2, 30]  # the numbers in the labels, as given
    assert sorted(t["claims"]) == ["C1", "C3"]  # C1 is always added: it gives the category shares
    for claim in ("C1", "C3"):
        assert [r["checkpoint"] for r in t["claims"][claim]["rows"]] == ["epoch-10", "epoch-2", "epoch-30"]
    rows = trend_rows(t)
    assert len(rows) == 2 * 3 and {r["verdict"] for r in rows} <= {"holds", "fails", "inconclusive", "not_applicable"}
    # the three random checkpoints differ, so their C1 shares differ
    shares = next(iter(t["categories"].values()))
    assert len(shares["skip"]) == 3 and len(set(map(str, zip(shares["skip"], shares["mix"])))) > 1


def test_markdown_and_html_show_every_checkpoint(trend_json):
    md = (trend_json / "t.md").read_text()
    assert md.count("| epoch-2 |") == 3 and "## Category proportions" in md  # two claim rows, one header
    page = (trend_json / "t.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<td>epoch-30</td>" in page


def test_figures_follow_the_report_contract():
    t = {"checkpoints": [{"label": "a", "x": 0}, {"label": "b", "x": 1}],
         "claims": {"C3": {"title": "t", "rows": [{"checkpoint": "a", "verdict": "fails", "effect": 0.1,
                                                   "ci_low": -0.1, "ci_high": 0.3},
                                                  {"checkpoint": "b", "verdict": "holds", "effect": -0.5,
                                                   "ci_low": -0.7, "ci_high": -0.3}]}},
         "categories": {}}
    (fig,) = trend_figures(t)
    assert fig["panels"][0]["label"] == "C3 (FH)" and fig["panels"][0]["bands"]["effect"]["low"] == [-0.1, -0.7]
    assert "C3" in render_trend_markdown(t) and render_trend_html(t).count("<tr>") == 3


@pytest.mark.parametrize("args, message", [
    (["trend", "zoo:cifar-resnet20-synth32"], "writes nothing"),
    (["trend", "zoo:cifar-resnet20-synth32", "--json", "afile/t.json"], "--json afile/t.json: cannot be created"),
    (["trend", "zoo:cifar-resnet20-synth32", "zoo:cifar-resnet20-synth32", "--labels", "a", "--json", "t.json"],
     "one distinct label per checkpoint"),
])
def test_bad_trend_arguments_are_refused_before_any_work(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder")
    assert main(args) == 2
    assert message in capsys.readouterr().err
