"""Many checkpoints: each transform captured once, xdist groups by model, shards, merged reports."""

from __future__ import annotations

import numpy as np
import pytest

from resstream_assert.cli import main as cli_main
from resstream_assert.config import ConfigError, RunConfig, build_run_config
from resstream_assert.pipeline import Pipeline, model_refs
from resstream_assert.report.collect import ReportCollector, read_report, write_report
from resstream_assert.report.merge import merge_reports
from resstream_assert.errors import MergeError
from tests.report_synth import make_result

SPEC = "tests.cifar_user_model:resnet20"


def test_names_of_one_transform_are_captured_once():
    from resstream_assert.capture import COUNTERS

    pipe = Pipeline(RunConfig(models=(SPEC,), images=16, input_size=32, progress=False))
    before = COUNTERS["images"]
    got = pipe.responses(SPEC, ("id", "S", "zoom2.0", "zoom1", "Sinv"))
    assert COUNTERS["images"] - before == 3 * 16  # id (= zoom1), S (= zoom2.0), Sinv
    assert [r.variant for r in got.values()] == ["id", "S", "zoom2.0", "zoom1", "Sinv"]
    assert np.array_equal(got["S"].get(3, "branch_out"), got["zoom2.0"].get(3, "branch_out"))
    assert not np.array_equal(got["S"].get(3, "branch_out"), got["Sinv"].get(3, "branch_out"))


@pytest.mark.parametrize("shard, expected", [((1, 2), ["a", "c", "e"]), ((2, 2), ["b", "d"]), ((3, 3), ["c"])])
def test_shards_deal_the_model_list_round_robin(shard, expected):
    cfg = RunConfig(models=tuple(f"zoo:{m}" for m in "abcde"), shard=shard)
    assert [r.spec[4:] for r in model_refs(cfg)] == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ConfigError, match="--resstream-shard"):
        build_run_config({"shard": text})


def _report(models, seed=0, shard=None, rho=-0.3, claims=("C1", "C3"), verdict="holds", run=("r18", "r50", "r101")):
    config = {"models": list(run), "seed": seed, **({"shard": list(shard)} if shard else {})}
    col = ReportCollector(config=config, seed=seed)
    for m in models:
        for c in claims:
            col.add(make_result(m, c, rho=rho, verdict=verdict), f"t.py::test[{m}-{c}]")
    return col.to_json()


def test_merged_shards_give_the_run_order_and_keep_each_shard():
    merged = merge_reports([_report(["r50"], shard=(2, 2)), _report(["r18", "r101"], shard=(1, 2))], ["b", "a"])
    assert [(r["model"], r["claim"]) for r in merged["results"]] == [
        ("r18", "C1"), ("r18", "C3"), ("r50", "C1"), ("r50", "C3"), ("r101", "C1"), ("r101", "C3")]
    assert merged["models"] == ["r18", "r50", "r101"] and [s["name"] for s in merged["shards"]] == ["b", "a"]
    assert "shard" not in merged["config"]


def test_merge_refuses_other_settings_and_duplicates():
    with pytest.raises(MergeError, match="other settings.*seed"):
        merge_reports([_report(["r18"]), _report(["r50"], seed=1)])
    with pytest.raises(MergeError, match="r18.*in both"):
        merge_reports([_report(["r18"], run=["r18"]), _report(["r18"], run=["r18"])])


RUN = ("r18", "r50")  # a run of two models in two shards (the shards' reports name the whole model list)


def test_report_merge_command_writes_reports_and_gates_on_a_baseline(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_report(_report(["r18"], shard=(1, 2), run=RUN), a)
    write_report(_report(["r50"], shard=(2, 2), run=RUN), b)
    out = tmp_path / "merged.json"
    assert cli_main(["report", "merge", str(a), str(b), "--json", str(out), "--md", str(tmp_path / "m.md"),
                     "--html", str(tmp_path / "m.html")]) == 0
    merged = read_report(out)
    assert len(merged["results"]) == 4 and "<html" in (tmp_path / "m.html").read_text()
    printed = capsys.readouterr().out
    assert "merged 2 reports: 4 results of 2 models" in printed and "r50[torch]" in printed
    write_report(merged, tmp_path / "base.json")
    assert cli_main(["report", "merge", str(a), str(b), "--baseline", str(tmp_path / "base.json")]) == 0
    write_report(_report(["r50"], shard=(2, 2), rho=0.4, run=RUN), b)  # r50's rho drifts
    code = cli_main(["report", "merge", str(a), str(b), "--baseline", str(tmp_path / "base.json"),
                     "--compare-fail", "rho:abs>0.1"])
    assert code == 1 and "FAIL" in capsys.readouterr().out
    assert cli_main(["report", "merge", str(a), str(tmp_path / "nope.json")]) == 2


def test_report_merge_always_compares_verdicts(tmp_path, capsys):
    """A tolerance on a quantity does not switch the verdict comparison off (as in the pytest plugin's gate)."""
    a, b, base = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "base.json"
    write_report(_report(["r18"], shard=(1, 2), run=RUN), a)
    write_report(_report(["r50"], shard=(2, 2), run=RUN), b)
    assert cli_main(["report", "merge", str(a), str(b), "--json", str(base)]) == 0
    write_report(_report(["r50"], shard=(2, 2), verdict="fails", run=RUN), b)  # same numbers, the verdicts changed
    code = cli_main(["report", "merge", str(a), str(b), "--baseline", str(base), "--compare-fail", "rho:abs>0.1"])
    assert code == 1 and "verdict" in capsys.readouterr().out


def test_xdist_runs_all_tests_of_one_model_on_one_worker(pytester):
    # Real zoo names: every --resstream-model is loaded and discovered at start-up, so a made-up one is refused.
    A, B = "zoo:cifar-resnet20-synth32", "zoo:bottleneck-synth64"
    pytester.makepyfile(test_models="""
import os, pytest

@pytest.mark.parametrize("k", range(6))
def test_model(resstream_ref, k):
    with open("workers.txt", "a") as fh:
        fh.write(f"{resstream_ref.spec} {os.environ['PYTEST_XDIST_WORKER']}\\n")
""")
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--resstream-model", A,
                                           "--resstream-model", B, "--resstream-no-cache")
    result.assert_outcomes(passed=12)
    seen: dict = {}
    for line in (pytester.path / "workers.txt").read_text().splitlines():
        spec, worker = line.split()
        seen.setdefault(spec, set()).add(worker)
    assert set(seen) == {A, B} and all(len(w) == 1 for w in seen.values()), seen


def test_the_onnxruntime_engine_gives_the_torch_engine_s_responses():
    """The default CPU engine captures a torch model through its own ONNX export: the same numbers (the untransformed
    responses, kept in float32, to 1e-4; a transformed variant, stored in float16, to one float16 step: two engines
    1e-7 apart can round to neighbouring float16 values)."""
    cfg = dict(models=(SPEC,), images=64, input_size=32, progress=False)
    ort, ref = Pipeline(RunConfig(**cfg)), Pipeline(RunConfig(**cfg, engine="torch"))
    assert (ort.engine(SPEC), ref.engine(SPEC)) == ("onnxruntime", "torch")
    got, want = ort.responses(SPEC, ("id", "S")), ref.responses(SPEC, ("id", "S"))
    a, b = got["id"], want["id"]
    assert set(a.center) == set(b.center)
    for key in b.center:
        np.testing.assert_allclose(a.center[key], b.center[key], rtol=1e-4, atol=1e-5 * np.abs(b.center[key]).max())
    a, b = got["S"], want["S"]
    for key in b.center:
        x, y = a.center[key].astype(np.float32), b.center[key].astype(np.float32)
        step = np.spacing(np.abs(y).astype(np.float16)).astype(np.float32)  # one float16 step at each value
        assert np.all(np.abs(x - y) <= step + 1e-5 * np.abs(y).max()), key
    with pytest.raises(ConfigError, match="engine"):
        build_run_config({"engine": "tensorrt"})
