"""Feature visualizations as a stimulus source: measures on given stimuli, the success check, the
pipeline and plugin wiring (--resstream-stimuli), the agreement report, the cache, the CLI grid,
and the exemplar path's report unchanged (byte for byte against a report of the code before)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from resstream_assert.config import ConfigError, RunConfig, build_run_config
from resstream_assert.measures import MIX, OVERWRITE, SKIP, UNDEFINED, BlockStimuli, block_measures, exemplars
from resstream_assert.pipeline import Pipeline, model_refs

CIFAR = "zoo:cifar-resnet20-synth32"


def _config(**kw) -> RunConfig:
    base = dict(models=(CIFAR,), images=64, stimuli="featviz", channels=3, featviz={"steps": 4},
                claim_options={"alpha": 0.05, "mostly": None, "min_effect": None, "n_resamples": 199})
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return Pipeline(_config(cache_dir=str(tmp_path_factory.mktemp("fzcache"))))


def test_measures_on_given_stimuli_equal_the_exemplar_path(pipe):
    """The plug-in design: exemplars passed as given stimuli give exactly the exemplar measures."""
    rmap, resp = pipe.map(CIFAR), pipe.responses(CIFAR, ("id", "S", "Sinv", "flip"))
    block = rmap[4]
    r = resp["id"]
    ex = [exemplars(r.get(block, s), 9) for s in ("skip_out", "branch_out", "resid_post", "resid_sum")]
    given = block_measures(block, resp, stimuli=BlockStimuli(resp, *ex, source="exemplars"))
    default = block_measures(block, resp)
    for name in ("m_p1", "m_p2", "m_p1_coded", "b_at_xi", "rho_tuning"):
        np.testing.assert_array_equal(getattr(given, name), getattr(default, name))
    for key in ("sm_b", "sm_i", "sm_b_rev", "sm_b_flip"):
        np.testing.assert_array_equal(given.scale[key], default.scale[key])


def test_missing_stimuli_are_undefined_never_coded(pipe):
    """A failed image (-1) leaves the channel undefined, even where the papers' codes would say skip."""
    rmap, resp = pipe.map(CIFAR), pipe.responses(CIFAR, ("id",))
    block = rmap[4]
    r = resp["id"]
    xi, xb = exemplars(r.get(block, "skip_out"), 2), exemplars(r.get(block, "branch_out"), 2)
    xb_failed = xb.copy()
    xb_failed[:5] = -1  # every B image of channels 0-4 failed
    xb_failed[5:10, 0] = -1  # one of two seeds failed: the other one is used
    bm = block_measures(block, resp, stimuli=BlockStimuli(resp, xi, xb_failed, xi, xi))
    assert np.isnan(bm.m_p1[:5]).all() and np.isnan(bm.m_p1_coded[:5]).all()
    assert (bm.category("p1")[:5] == UNDEFINED).all()
    assert not np.isnan(bm.m_p1[5:10]).any()
    one = block_measures(block, resp, stimuli=BlockStimuli(resp, xi, xb[:, 1:], xi, xi))
    np.testing.assert_allclose(bm.m_p1[5:10], one.m_p1[5:10])
    with pytest.raises(ValueError, match="stimulus indices"):
        block_measures(block, resp, stimuli=BlockStimuli(resp, xi[:3], xb, xi, xi))


def test_featviz_pipeline_success_check_and_sampling(pipe):
    rmap = pipe.map(CIFAR)
    fz = pipe.featviz(CIFAR, "torch", ("id",))
    assert [b.block for b in fz.blocks] == [b.index for b in rmap][1:]  # the first block is never analysed
    probe = pipe.responses(CIFAR, ("id",))["id"]
    for b in fz.blocks:
        assert len({t.channel for t in b.targets}) == 3 and b.images.dtype == np.uint8
        start, _ = fz.block_rows(b.block)
        for i, t in enumerate(b.targets):  # success = own unit's response above the probe's 99th percentile
            row = start + i
            resp = fz.responses["id"].get(t.block, t.site)[row, t.channel]
            thr = np.percentile(probe.get(t.block, t.site)[:, t.channel], 99)
            assert fz.ok[row] == (resp > thr)
            assert (fz.indices[b.block][t.site][t.channel, t.seed] == row) == bool(fz.ok[row])
    assert 0 < fz.ok.mean() < 1  # at 4 steps some images fail (e.g. the option-A shortcut's zero-padded channels)
    # seeded sample: the same channels again, other ones with another seed
    from resstream_assert.capture.featviz_responses import sample_channels

    a, b = sample_channels(rmap, 3, 0), sample_channels(rmap, 3, 1)
    assert all(np.array_equal(a[k], sample_channels(rmap, 3, 0)[k]) for k in a)
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    assert all(len(v) == rmap[k].channels for k, v in sample_channels(rmap, None, 0).items())


def test_featviz_results_report_sampling_and_failures(pipe):
    res = pipe.evaluate(CIFAR, "torch", ["C1"], stimuli="featviz")["C1"]
    assert res.stimuli == "featviz" and res.to_dict()["stimuli"] == "featviz"
    assert res.values["fz_channels_per_block"] == 3 and res.values["fz_steps"] == 4
    row = next(r for r in res.rows if r.block == "layer2.1")
    assert row.values["fz_channels"] == 3 and row.values["fz_n_I"] == 3 and 0 <= row.values["fz_ok_I"] <= 3
    grids = [k for k in res.figures if k.startswith("featviz_grid_")]
    assert len(grids) == len(pipe.map(CIFAR)) - 1 and res.figures[grids[0]]["type"] == "images"
    fz = pipe.featviz(CIFAR, "torch", ("id",))
    for label, (ok, n) in fz.rates().items():  # per-site success rates, in the values and the grids' titles
        assert res.values[f"fz_success_{label}"] == ok / n and n == 3 * (len(pipe.map(CIFAR)) - 1)
    s = next(r for r in res.rows if r.block == "layer2.1").values
    assert f"I {int(s['fz_ok_I'])}/{int(s['fz_n_I'])}" in res.figures["featviz_grid_layer2.1"]["title"]
    assert "fz_plateau" not in res.values  # the early stop is off by default
    ex = pipe.evaluate(CIFAR, "torch", ["C1"])["C1"]
    assert "stimuli" not in ex.to_dict() and not any(k.startswith("fz_") for r in ex.rows for k in r.values)


def test_featviz_images_come_from_the_disk_cache(pipe, tmp_path):
    pipe.featviz(CIFAR, "torch", ("id",))
    lines: list[str] = []
    again = Pipeline(pipe.config, log=lines.append).featviz(CIFAR, "torch", ("id",))
    assert any("featviz" in ln and "from cache" in ln for ln in lines), lines
    np.testing.assert_array_equal(again.blocks[0].images, pipe.featviz(CIFAR, "torch", ("id",)).blocks[0].images)


def test_agreement_kappa_must_hold_and_must_fail(pipe):
    """Control where it must hold (identical categories: kappa 1) and where it must fail (shuffled: kappa ~ 0)."""
    from resstream_assert.claims.agreement import category_agreement, cohen_kappa

    ex = pipe.measures(CIFAR, "torch", ("id",))
    same = category_agreement(CIFAR, "torch", ex, ex)
    assert same.verdict.value == "holds" and all(r.effect == pytest.approx(1.0) for r in same.rows if r.n)
    rng = np.random.default_rng(0)
    shuffled = [replace(bm, m_p1=rng.permutation(bm.m_p1)) for bm in ex]
    bad = category_agreement(CIFAR, "torch", ex, shuffled)
    assert bad.verdict.value == "fails" and bad.stimuli == "featviz" and not bad.gate
    assert cohen_kappa(np.array([SKIP, MIX, OVERWRITE, SKIP]), np.array([SKIP, MIX, OVERWRITE, MIX])) == \
        pytest.approx((0.75 - 0.3125) / (1 - 0.3125))


def test_config_options_and_refs():
    assert "stimuli" not in RunConfig().to_dict() and "featviz" not in RunConfig().to_dict()
    cfg = build_run_config({"stimuli": "both", "channels": 4, "featviz-steps": 8, "featviz-regime": "per-layer"})
    assert cfg.sources == ("exemplars", "featviz") and cfg.to_dict()["featviz"]["regime"] == "per-layer"
    assert [str(r) for r in model_refs(cfg)] == ["zoo:resnet18-synth96", "zoo:resnet18-synth96[featviz]"]
    for bad in ({"stimuli": "dreams"}, {"featviz-regime": "lucent"}, {"featviz-lr": 0.0}, {"channels": 0}):
        with pytest.raises(ConfigError):
            build_run_config(bad)


def test_cli_featviz_writes_a_grid(tmp_path, capsys):
    from resstream_assert.cli import main

    out = tmp_path / "grid.png"
    assert main(["featviz", CIFAR, "--block", "layer2.1", "--out", str(out), "--channels", "2", "--steps", "3",
                 "--images", "64", "--no-cache"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "success" in capsys.readouterr().out


def test_real_world_architecture_timm(tmp_path):
    """timm's ResNet (its own block code, written the way public code writes it) through the featviz path."""
    pytest.importorskip("timm")
    spec = "timm:resnet18"
    p = Pipeline(RunConfig(models=(spec,), input_size=32, images=64, stimuli="featviz", channels=2,
                           featviz={"steps": 3}, cache_dir=str(tmp_path)))
    fz = p.featviz(spec, "torch", ("id",))
    assert len(fz.blocks) == len(p.map(spec)) - 1 and fz.responses["id"].n_images == 6 * len(fz.blocks)
    ms = p.measures(spec, "torch", ("id",), "featviz")
    assert len(ms) == len(p.map(spec)) and ms[1].m_p1.shape == (p.map(spec)[1].channels,)
    assert np.isnan(ms[0].m_p1).all()  # the first block has no stimuli


ROOT = Path(__file__).resolve().parents[1]


def test_plugin_end_to_end_both_sources(pytester, monkeypatch):
    """--resstream-stimuli both on a tiny model: claims per source, the agreement test, the reports."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's package in the subprocess
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    result = pytester.runpytest_subprocess(
        "--pyargs", "resstream_assert.suite", "--resstream-model", CIFAR, "--resstream-images", "64",
        "--resstream-claims", "C1,C3", "--resstream-stimuli", "both", "--resstream-channels", "3",
        "--resstream-featviz-steps", "3", "--resstream-resamples", "199", "--resstream-survey", "--resstream-no-cache",
        "--resstream-report-json", "r.json", "--resstream-report-md", "r.md", "--resstream-report-html", "r.html")
    assert result.ret == 0, result.stdout.str()[-3000:]
    report = json.loads((pytester.path / "r.json").read_text())
    keys = {(r["claim"], r.get("stimuli", "exemplars")) for r in report["results"]}
    assert keys == {("C1", "exemplars"), ("C3", "exemplars"), ("C1", "featviz"), ("C3", "featviz"),
                    ("C1-agree", "featviz")}
    assert report["config"]["stimuli"] == "both" and report["config"]["channels"] == 3
    out = result.stdout.str()
    assert "stimulus agreement" in out and "[torch+featviz]" in out
    assert "Stimulus agreement" in (pytester.path / "r.md").read_text()
    html = (pytester.path / "r.html").read_text()
    assert "featviz_grid_layer2.1" in html and "data:image/png;base64" in html


def test_bad_stimuli_option_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("--pyargs", "resstream_assert.suite", "--resstream-stimuli", "lucent",
                                           "-p", "no:cacheprovider")
    assert result.ret == 4
    assert "--resstream-stimuli lucent" in result.stderr.str()
