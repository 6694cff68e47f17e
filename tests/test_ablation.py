"""C10/C11: the cut-graph lesion runner is exact, lesions set channels to their means, known answers."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import resstream_assert.discovery.torch_graph as G
from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.claims import REGISTRY, ClaimContext, ClaimOptions
from resstream_assert.claims.ablation import (SlopeExceedances, evaluate_c10, evaluate_c11, lesion_test, plan_lesions,
                                              reference_check)
from resstream_assert.config import RunConfig
from resstream_assert.discovery import discover
from resstream_assert.discovery.torch_graph import block_nodes
from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions import lesion as L
from resstream_assert.interventions import lesion_runner as LR
from resstream_assert.interventions import reference as R
from resstream_assert.loading import LoadedModel
from resstream_assert.pipeline import Pipeline
from resstream_assert.results import Verdict
from resstream_assert.stats import at_chance
from resstream_assert.stimuli.probe import embedded_probe
from resstream_assert.stimuli.synthetic import CLASS_NAMES
from tests.cifar_user_model import resnet20
from resstream_assert.loading.random_weights import randomize_bn

SPEC = "tests.cifar_user_model:resnet20"
ZOOMS = np.array([1.0, 1.25, 1.5, 2.0])


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    module = randomize_bn(resnet20(), seed=3).eval()
    loaded = LoadedModel(spec=SPEC, name="resnet20", backend="torch", module=module, input_size=32,
                         num_classes=10, digest="t", class_names=CLASS_NAMES)
    return loaded, discover(loaded)


@pytest.fixture(scope="module")
def probe():
    return embedded_probe(n=40, size=32).labeled()


def _ctx(data, claim: str = "C10", **kw) -> ClaimContext:
    ctx = ClaimContext(model="m", backend="torch", rmap=None, measures=(), responses={},
                       options=ClaimOptions(n_boot=200), **kw)
    return ctx.for_claim(REGISTRY[claim], data)


# --- the runner ----------------------------------------------------------------------------

def test_default_blocks_are_the_last_of_the_middle_stages(net):
    import torchvision

    _, rmap = net
    assert [b.name for b in L.default_ablation_blocks(rmap)] == ["layer2.2"]  # 3 stages: the middle one
    rn18 = torchvision.models.resnet18(num_classes=10).eval()
    assert [b.name for b in L.default_ablation_blocks(discover(rn18, 96))] == ["layer2.1", "layer3.1"]


def test_tail_forward_equals_full_forward_with_and_without_lesion(net, probe):
    loaded, rmap = net
    block = rmap["layer2.2"]
    head, tail = G.split_at(loaded.module, block_nodes(loaded.module)[block.index].resid_sum)
    assert tail is not None
    x = (torch.as_tensor(probe.images[:16]).float() / 255 - torch.tensor(loaded.mean).view(1, 3, 1, 1)) \
        / torch.tensor(loaded.std).view(1, 3, 1, 1)
    chans, value = torch.tensor([1, 5, 9]), torch.tensor([0.3, -0.2, 1.1])

    def ablate(t):
        t = t.clone()
        t[:, chans] = value[None, :, None, None]
        return t

    with torch.inference_mode():
        assert torch.allclose(tail(head(x)), loaded.module(x), atol=1e-5, rtol=0)
        cut = tail(ablate(head(x))).numpy()
        plain = loaded.module(x).numpy()
    edits = {(block.index, "resid_sum"): ablate}
    full = capture_torch(loaded, rmap, [probe.images[:16] / 255.0], sites=(), edits=edits)
    assert np.abs(cut - full.logits).max() < 1e-5
    assert np.abs(cut - plain).max() > 1e-3  # the lesion did something


def test_lesion_sets_channels_to_their_means_and_fallback_agrees(net, probe, monkeypatch):
    loaded, rmap = net
    block = rmap["layer2.2"]
    seen = []
    run = LR._Runner(loaded, rmap, block, "cpu", 64, {})
    run.tail.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    monkeypatch.setattr(LR, "_Runner", lambda *a, **k: run)
    sets = [np.array([0, 3, 7]), np.array([2, 4])]
    corr, intact, values, mode = L.lesion_correctness(loaded, rmap, block, probe.images, probe.labels, (1.0,), sets)
    assert mode == "tail" and corr.shape == (2, 1, len(probe)) and intact.shape == (1, len(probe))
    # values: mean over images of ReLU(center unit of resid_sum), from an independent capture
    ref = capture_torch(loaded, rmap, [probe.images / 255.0], sites=("resid_sum",)).get(block.index, "resid_sum")
    np.testing.assert_allclose(values, np.maximum(ref, 0).mean(0), rtol=1e-5, atol=1e-6)
    fed = torch.cat(seen).view(3, len(probe), block.channels, *block.spatial)  # [empty, set0, set1]
    feats = fed[0]
    for g, s in enumerate(sets, start=1):
        other = np.setdiff1d(np.arange(block.channels), s)
        assert torch.equal(fed[g][:, other], feats[:, other])
        np.testing.assert_allclose(fed[g][:, s].amin((0, 2, 3)).numpy(), values[s], rtol=1e-6)
        np.testing.assert_allclose(fed[g][:, s].amax((0, 2, 3)).numpy(), values[s], rtol=1e-6)
    # the full-forward fallback (used when tensors cross the cut) gives the same predictions
    monkeypatch.undo()
    split = G.split_at
    monkeypatch.setattr(G, "split_at", lambda m, n: (split(m, n)[0], None))
    corr2, intact2, _, mode2 = L.lesion_correctness(loaded, rmap, block, probe.images, probe.labels, (1.0, 1.5), sets,
                                                    values=values)
    assert mode2 == "full"
    monkeypatch.undo()
    corr3, intact3, _, _ = L.lesion_correctness(loaded, rmap, block, probe.images, probe.labels, (1.0, 1.5), sets,
                                                values=values)
    assert np.array_equal(corr2, corr3) and np.array_equal(intact2, intact3)


# --- the statistics on synthetic correctness --------------------------------------------------

def _synthetic(seed: int, planted: bool, n: int = 300, n_random: int = 100):
    rng = np.random.default_rng(seed)
    intact = rng.random(n) < 0.9
    intact = np.stack([intact & (rng.random(n) > 0.05 * (z - 1)) for z in ZOOMS])  # zoom costs a little

    def lesion(hurt):
        return intact & ~(rng.random((len(ZOOMS), n)) < hurt[:, None])

    random = np.stack([lesion(0.06 + 0.03 * (ZOOMS - 1)) for _ in range(n_random)])
    selected = lesion(0.06 + (0.25 if planted else 0.03) * (ZOOMS - 1))
    anti = lesion(0.06 + 0.03 * (ZOOMS - 1))
    return intact, selected, random, anti


def test_planted_scale_harm_holds():
    intact, sel, rand, anti = _synthetic(0, planted=True)
    t, v, fig = lesion_test(ZOOMS, intact, sel, rand, anti, rng=0, n_boot=500)
    assert t.p_value < 0.05 and t.effect > 0 and t.ci_low > 0
    assert all(v[f"p_zoom{z:g}"] < 0.05 for z in ZOOMS[1:]) and v["gap_max_zoom_ci_low"] > 0
    assert v["p_anti"] > 0.05 and len(fig["series"]["scale-invariant set"]) == 4
    block = L.BlockLesion("layer2.1", 3, 128, np.arange(10), np.arange(10, 20), np.zeros((100, 10), int),
                          np.ones(128), sel, anti, rand)
    data = L.LesionData(tuple(ZOOMS), np.arange(300) % 10, intact, (block,), 0, 100)
    res = evaluate_c10(_ctx(data))
    assert res.verdict == Verdict.HOLDS and res.rows[0].p_value < 0.05
    assert res.rows[0].values["n_selected"] == 10
    fig = res.figures["lesion_zoom_curves"]
    assert fig["type"] == "lines" and fig["panels"][0]["label"] == "layer2.1"
    from resstream_assert.report.plots import render_figure

    assert render_figure(fig)[:8] == b"\x89PNG\r\n\x1a\n"  # the report can draw it


def test_exchangeable_set_does_not_hold_and_p_is_roughly_uniform():
    ps = []
    for seed in range(60):
        intact, sel, rand, _ = _synthetic(seed, planted=False, n=200, n_random=100)
        t, _, _ = lesion_test(ZOOMS, intact, sel, rand, rng=seed, n_boot=0)
        ps.append(t.p_value)
    ps = np.array(ps)
    assert 0.35 < ps.mean() < 0.65 and np.mean(ps < 0.05) <= 0.12
    assert np.mean(ps < 0.5) == pytest.approx(0.5, abs=0.2)
    intact, sel, rand, _ = _synthetic(1, planted=False)
    block = L.BlockLesion("layer2.1", 3, 128, np.arange(10), np.arange(0), np.zeros((100, 10), int), np.ones(128),
                          sel, None, rand)
    data = L.LesionData(tuple(ZOOMS), np.arange(300) % 10, intact, (block,), 0, 100)
    assert evaluate_c10(_ctx(data)).verdict != Verdict.HOLDS


def test_seeds_reproduce():
    intact, sel, rand, anti = _synthetic(5, planted=True)
    a = lesion_test(ZOOMS, intact, sel, rand, anti, rng=3, n_boot=300)
    b = lesion_test(ZOOMS, intact, sel, rand, anti, rng=3, n_boot=300)
    assert a[0].to_dict() == b[0].to_dict() and a[1] == b[1]


def test_at_chance_and_bad_zooms():
    labels = np.arange(200) % 10
    assert at_chance(np.random.default_rng(0).random(200) < 0.1, labels)
    assert at_chance(np.ones(200, bool), labels) == ""
    with pytest.raises(ValueError, match="start at 1.0"):
        lesion_test((1.25, 2.0), np.ones((2, 5), bool), np.ones((2, 5), bool), np.ones((3, 2, 5), bool))


# --- the intervention requests and their not-applicable paths ---------------------------------

def _wb(spec=SPEC, images=64, **kw):
    return Pipeline(RunConfig(models=(spec,), images=images, input_size=32, progress=False, **kw))


def _env(wb, spec=SPEC, loaded=None):
    loaded = loaded or wb.model(spec)
    return InterventionEnv(loaded, wb.map(spec), wb.probe(loaded.input_size))


def test_not_applicable_paths(net):
    request = L.LesionRequest(L.LesionOptions(n_random=4), ())
    res = evaluate_c10(_ctx(None))
    assert res.verdict == Verdict.NOT_APPLICABLE and "lesion" in res.reason
    wb = _wb()
    data = request.run(_env(wb, loaded=replace(wb.model(SPEC), backend="onnx")))
    assert data.status == "not_applicable" and "torch backend" in data.reason
    data = request.run(_env(wb))  # user model on the synthetic probe
    assert data.status == "not_applicable" and "embedded probe" in data.reason
    assert evaluate_c10(_ctx(data)).verdict == Verdict.NOT_APPLICABLE
    wb = _wb(spec=SPEC + "+nc-rand")
    data = request.run(_env(wb, SPEC + "+nc-rand"))
    assert data.status == "not_applicable" and "chance" in data.reason
    c11 = evaluate_c11(_ctx(R.ReferenceRequest().run(_env(wb, SPEC + "+nc-rand")), "C11"))
    assert c11.verdict == Verdict.NOT_APPLICABLE and "resnet18" in c11.reason
    assert REGISTRY["C10"].needs == ("id", "S", "Sinv")
    assert REGISTRY["C10"].prepare is plan_lesions and REGISTRY["C3"].prepare is None


def test_request_end_to_end_on_a_labeled_model(net, monkeypatch):
    """Plan and run C10's lesions on resnet20 (class names injected; the chance gate bypassed: it is untrained).
    S* is picked on one half of the probe images and the lesions are scored on the other half's labeled images."""
    from resstream_assert.measures import MeasureOptions, block_measures, p2_selected

    loaded, _ = net
    wb = _wb(images=64)
    wb._memo[("model", SPEC, "torch")] = loaded
    rmap = wb.map(SPEC)
    options = ClaimOptions(lesion=(("min_selected", 1), ("n_random", 6), ("zooms", (1.0, 2.0)), ("sequential", 0),
                                   ("min_images", 10)))
    resp = wb.responses(SPEC, ("id", "S", "Sinv"))
    ctx = ClaimContext(SPEC, "torch", rmap, wb.measures(SPEC, "torch", ("id", "S", "Sinv")), resp, options=options)
    request, again = plan_lesions(ctx.for_claim(REGISTRY["C10"])), plan_lesions(ctx.for_claim(REGISTRY["C10"]))
    assert request.key == again.key  # seeded: the same plan, the same memo key
    select, score = request.select_rows, request.score_rows
    assert len(select) == 32 and len(score) == 32 and not np.intersect1d(select, score).size
    plan = request.plans[0]
    half = block_measures(rmap[plan.index], {v: r.subset(select) for v, r in resp.items()}, MeasureOptions())
    assert np.array_equal(plan.selected, np.flatnonzero(p2_selected(half)))  # picked on the selection half
    monkeypatch.setattr(L, "at_chance", lambda *a, **k: "")
    monkeypatch.setattr("resstream_assert.claims.ablation.at_chance", lambda *a, **k: "")
    data = request.run(_env(wb))
    scored = data.scored_rows
    labeled = wb.probe(32).labels
    assert np.array_equal(scored, score[labeled[score] >= 0]) and not np.intersect1d(scored, select).size
    assert np.array_equal(data.labels, labeled[scored])
    assert data.status == "ok" and data.intact.shape == (2, len(scored)) and data.blocks[0].block == "layer2.2"
    bl = data.blocks[0]
    if bl.note:  # too few P2 channels in this random net; the block is reported as such
        assert bl.correct_selected is None
    else:
        assert bl.correct_random.shape == (6, 2, len(scored)) and len(bl.selected) >= 1
        assert not np.intersect1d(bl.random_sets, bl.selected).size
        assert data.forwards["tail_images"] >= (6 + 1) * 2 * len(scored)
        res = evaluate_c10(_ctx(data))
        assert res.verdict in (Verdict.HOLDS, Verdict.FAILS)
        assert {"p_t_prediction", "baseline_damage_selected", "p_baseline_damage"} <= set(res.rows[0].values)


def test_lesion_options_from_the_run(net):
    ctx = ClaimContext("m", "torch", net[1], (), {}, options=ClaimOptions.from_run(
        {"lesion": {"n_random": 7}, "min_images": 80}), seed=4)
    request = plan_lesions(ctx.for_claim(REGISTRY["C10"]))
    o = request.options
    assert (o.n_random, o.seed, o.min_images) == (7, 4, 80)
    assert "no SM_B" in request.plans[0].note  # no measures: the block is planned but not run
    with pytest.raises(ValueError, match="zoom"):
        L.LesionOptions.from_mapping({"zoom": (1, 2)})
    with pytest.raises(ValueError, match="n_random=1"):
        L.LesionOptions(n_random=1).check()


# --- C11 ---------------------------------------------------------------------------------------

def test_c11_reference_logic_on_synthetic_accuracies():
    ok = reference_check(50000, 0.69758, {"layer2.1": 0.63750, "layer3.1": 0.63493})
    assert all(c["ok"] for c in ok) and ok[1]["reference"] == pytest.approx(6.008)
    bad = reference_check(50000, 0.6990, {"layer2.1": 0.6375, "layer3.1": 0.6300})
    assert [c["ok"] for c in bad] == [False, True, False]  # empty +0.14 pp; 3.1 drop 6.9 vs 6.27
    ref = R.ReferenceData(50000, 0.69758, {"layer2.1": 0.6376, "layer3.1": 0.6349})
    res = evaluate_c11(_ctx(ref, "C11"))
    assert res.verdict == Verdict.HOLDS and len(res.rows) == 3
    res = evaluate_c11(_ctx(replace(ref, acc_empty=0.70), "C11"))
    assert res.verdict == Verdict.FAILS and "empty lesion" in res.reason
    res = evaluate_c11(_ctx(replace(ref, n_images=5000), "C11"))
    assert res.verdict == Verdict.INCONCLUSIVE
    assert math.isnan(res.p_value)


def test_c11_reference_run_on_a_tiny_imagenet_like_folder(tmp_path, monkeypatch):
    """The C11 data path end to end on 2 classes x 2 images (its gate is bypassed: it wants 1000 classes)."""
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    for c, (w, h) in enumerate(((300, 260), (250, 331))):
        (tmp_path / f"n0{c}").mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"n0{c}" / f"{i}.png")
    images, labels = next(R.imagenet_shards(tmp_path, 8))
    ref_tf = T.Compose([T.Resize(256), T.CenterCrop(224)])
    with Image.open(tmp_path / "n01" / "1.png") as im:
        assert np.array_equal(images[3], np.asarray(ref_tf(im.convert("RGB"))).transpose(2, 0, 1))
    assert labels.tolist() == [0, 0, 1, 1]
    torch.manual_seed(0)
    module = randomize_bn(torchvision.models.resnet18()).eval()
    loaded = LoadedModel(spec="torchvision:resnet18@w.pth", name="rn18", backend="torch", module=module,
                         input_size=224, num_classes=1000, digest="x")
    rmap = discover(loaded)
    ref = R.reference_data(loaded, rmap, tmp_path)
    assert ref.n_images == 0 and "1000 class folders" in ref.reason and "has 2" in ref.reason
    monkeypatch.setattr(R, "_reference_problem", lambda *a: "")
    sets = {"layer3.1": (1, 5, 9)}
    ref = R.reference_data(loaded, rmap, tmp_path, sets=sets, shard=3)
    assert ref.reason == "" and ref.n_images == 4
    x = (torch.as_tensor(images).float() / 255 - torch.tensor(loaded.mean).view(1, 3, 1, 1)) \
        / torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        plain = module(x).argmax(1).numpy()
    assert ref.acc_empty == np.mean(plain == labels)
    assert 0.0 <= ref.acc_lesion["layer3.1"] <= 1.0


# --- the sequential Monte-Carlo test (Besag-Clifford) ------------------------------------------

def test_sequential_pvalue_is_valid_and_saves_draws_on_null_instances():
    """Under the null (S* exchangeable with the random sets) P(p <= alpha) <= alpha, and most
    null instances stop long before N; a planted S* still runs every set and gets 1/(N+1)."""
    from scipy.stats import binomtest

    from resstream_assert.stats import sequential_pvalue

    rng = np.random.default_rng(0)
    n_inst, n_max, h = 4000, 100, 10
    ps, used = [], []
    for _ in range(n_inst):
        stats = rng.normal(size=n_max + 1)  # row 0: S*, exchangeable with the 100 random sets
        p, n = sequential_pvalue(stats[1:] >= stats[0], n_max, h)
        ps.append(p)
        used.append(n)
    ps = np.array(ps)
    for alpha in (0.01, 0.05, 0.1):
        k = int((ps <= alpha).sum())
        assert binomtest(k, n_inst, alpha).proportion_ci(0.99).low <= alpha, (alpha, k / n_inst)
    assert np.mean(used) < 35  # vs 100 for the fixed-size test
    planted = sequential_pvalue(np.zeros(n_max, bool), n_max, h)
    assert planted == (1 / (n_max + 1), n_max)


def test_sequential_c10_on_synthetic_lesions_keeps_verdicts_and_calibration():
    stop = SlopeExceedances(10)
    fixed, seq, runs = [], [], []
    for seed in range(200):
        intact, sel, rand, _ = _synthetic(seed, planted=False, n=200, n_random=100)
        exceed = stop.exceed(ZOOMS, intact, sel, rand)
        n_run = int(np.argmax(np.cumsum(exceed) >= 10)) + 1 if exceed.sum() >= 10 else 100
        runs.append(n_run)
        t_seq, _, _ = lesion_test(ZOOMS, intact, sel, rand[:max(n_run, 2)], rng=seed, n_boot=0, n_max=100,
                                  sequential=10)
        seq.append(t_seq.p_value)
        fixed.append(lesion_test(ZOOMS, intact, sel, rand, rng=seed, n_boot=0)[0].p_value)
    seq, fixed = np.array(seq), np.array(fixed)
    assert np.mean(seq < 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 200)  # false-positive rate at alpha
    assert np.array_equal(seq < 0.05, fixed < 0.05)  # the same decisions as all 100 sets
    assert np.mean(runs) < 40
    intact, sel, rand, anti = _synthetic(0, planted=True)
    t, _, _ = lesion_test(ZOOMS, intact, sel, rand, anti, rng=0, n_boot=0, n_max=100, sequential=10)
    assert t.p_value == pytest.approx(1 / 101)  # planted: every set ran, as in the fixed test


def test_bf16_tails_agree_with_fp32_and_leave_the_model_in_fp32(net, probe):
    loaded, rmap = net
    block = rmap["layer2.2"]
    sets = [np.array([0, 3, 7]), np.array([2, 4, 9, 11])]
    a = LR.lesion_correctness(loaded, rmap, block, probe.images, probe.labels, (1.0, 1.5), sets)
    b = LR.lesion_correctness(loaded, rmap, block, probe.images, probe.labels, (1.0, 1.5), sets, precision="bf16")
    assert np.mean(a[0] == b[0]) >= 0.95 and np.array_equal(a[2], b[2])  # values come from the fp32 head
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    with pytest.raises(ValueError, match="precision"):
        L.LesionOptions(precision="fp8").check()


# --- the defaults: h = 2 of N = 40 random sets, zooms (1, 2) -------------------------------------

def _two_blocks(instances, h: int):
    """LesionData of two blocks as the runner returns them under Besag-Clifford h (0: every set), the second
    block not run when the first stopped (C10 needs every block, so its verdict is then fixed)."""
    from calibration.lesions import sequential_run

    blocks, stopped = [], False
    for name, (intact, sel, rand) in zip(("layer2.1", "layer3.1"), instances):
        if stopped:
            blocks.append(L.BlockLesion(name, 3, 128, np.arange(5), np.arange(0), np.zeros((40, 5), int),
                                        note="not run: the claim cannot hold any more"))
            continue
        _, n_run = sequential_run((1.0, 2.0), intact, sel, rand, h, n_boot=0)
        stopped = n_run < len(rand)
        blocks.append(L.BlockLesion(name, 3, 128, np.arange(5), np.arange(0), np.zeros((40, 5), int), np.ones(128),
                                    sel, None, rand[:max(n_run, 2)], "", intact))
    return L.LesionData((1.0, 2.0), np.arange(instances[0][0].shape[1]) % 10, instances[0][0], tuple(blocks), 0, 40,
                        sequential=h)


def test_h2_of_40_decides_as_the_fixed_40_set_test():
    """Per block and per claim, on null and planted instances: the sequential test (h = 2, stopping a block and
    then the claim as soon as the outcome is fixed) decides exactly as all 40 sets would, at alpha and at the
    Holm thresholds of two blocks; a null block costs about 2 / p sets."""
    from calibration.lesions import RECORDED, load_recorded, sequential_run, synthetic_lesions

    assert (L.LesionOptions().sequential, L.LesionOptions().n_random, L.LesionOptions().zooms) == (2, 40, (1.0, 2.0))
    used, decisions = [], 0
    for seed in range(100):
        for excess in (0.0, 0.03, 0.08):
            pair = [synthetic_lesions(2 * seed + b, excess=excess * b if seed % 2 else excess) for b in (0, 1)]
            seq, fixed = (evaluate_c10(_ctx(_two_blocks(pair, h))) for h in (2, 0))
            assert seq.verdict == fixed.verdict, (seed, excess, seq.table(), fixed.table())
            for inst in pair:
                t_seq, n_run = sequential_run((1.0, 2.0), *inst, 2, n_boot=0)
                t_fix, _ = sequential_run((1.0, 2.0), *inst, 0, n_boot=0)
                for alpha in (0.05, 0.025):
                    assert (t_seq.p_value < alpha) == (t_fix.p_value < alpha)
                    decisions += t_fix.p_value < alpha
                used.append(n_run)
    assert decisions > 100  # planted instances reject: the check covers both decisions
    if RECORDED.exists():
        rec = load_recorded()  # a real model's recorded sets: each random set in turn as S* (a null instance)
        z = tuple(float(v) for v in rec["zooms"])
        keep = [z.index(1.0), z.index(2.0)]
        for block in rec["blocks"]:
            sets = rec[block]["random"][:41, keep]
            for i in range(41):
                rest = np.delete(sets, i, axis=0)
                t_seq, _ = sequential_run((1.0, 2.0), rec[block]["intact"][keep], sets[i], rest, 2, n_boot=0)
                t_fix, _ = sequential_run((1.0, 2.0), rec[block]["intact"][keep], sets[i], rest, 0, n_boot=0)
                assert (t_seq.p_value < 0.05) == (t_fix.p_value < 0.05)
    null_runs = np.array(used).reshape(100, 3, 2)[:, 0].ravel()
    assert np.mean(null_runs) < 16  # vs 40 for the fixed test


def test_a_stopped_block_ends_the_claim(net, monkeypatch):
    """C10 needs every block: once a block stopped early (certain to fail), the blocks after it are not run."""
    ran = []

    def fake(env, request, plan, zooms, lab, first, counters):
        ran.append(plan.block)
        rand = np.zeros((3, len(zooms), len(lab)), bool)  # 3 of 40 sets ran: the block stopped
        one = np.ones((len(zooms), len(lab)), bool)
        return L.BlockLesion(plan.block, plan.index, plan.channels, plan.selected, plan.anti, plan.random_sets,
                             np.ones(plan.channels), one, None, rand, "", one)

    monkeypatch.setattr(L, "_run_block", fake)
    monkeypatch.setattr(L, "label_problem", lambda *a: "")
    loaded, rmap = net
    plans = tuple(L.BlockPlan(b, i, 32, np.arange(4), np.arange(0), np.tile(np.arange(4, 8), (40, 1)))
                  for b, i in (("layer2.2", 5), ("layer3.2", 8)))
    probe = embedded_probe(n=120, size=32)
    request = L.LesionRequest(L.LesionOptions(), plans, SlopeExceedances(2), max_stopped=0)
    data = L.run_lesions(InterventionEnv(loaded, rmap, probe), request)
    assert ran == ["layer2.2"] and "not run" in data.blocks[1].note
    res = evaluate_c10(_ctx(data))
    assert res.verdict == Verdict.FAILS and res.rows[1].verdict == Verdict.INCONCLUSIVE
    request = L.LesionRequest(L.LesionOptions(), plans, SlopeExceedances(2), max_stopped=None)
    ran.clear()
    L.run_lesions(InterventionEnv(loaded, rmap, probe), request)
    assert ran == ["layer2.2", "layer3.2"]
