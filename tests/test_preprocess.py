"""Preprocessing that real models need: their normalisation as an input (recorded where it came from), the
resize policy of probe photographs, and class folders named by WordNet ids mapped to a model's outputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from resstream_assert.config import ConfigError, RunConfig, build_run_config
from resstream_assert.errors import ModelSpecError, ProbeError
from resstream_assert.interventions.lesion import label_problem
from resstream_assert.loading import IMAGENET_MEAN, IMAGENET_STD
from resstream_assert.pipeline import Pipeline, load_model
from resstream_assert.stimuli.probe import folder_probe, load_probe
from tests.preprocess_models import CIFAR10_MEAN, CIFAR10_STD

ROOT = Path(__file__).resolve().parents[1]
RECOGNISER = "tests.preprocess_models:cifar_recogniser"
CIFAR = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}


def _cifar_run(spec: str, images: int, **norm) -> Pipeline:
    return Pipeline(RunConfig(models=(spec,), probe="cifar10", images=images, input_size=32, engine="torch",
                              progress=False, **norm))


@pytest.fixture(scope="module")
def recogniser_runs():
    """The CIFAR-normalised model on the 1,000 shipped CIFAR-10 photographs, with its own normalisation given
    and with the default (ImageNet's, as for any factory model)."""
    return {name: _cifar_run(RECOGNISER, 1000, **norm) for name, norm in (("cifar", CIFAR), ("default", {}))}


def test_the_right_normalisation_gives_other_responses_and_higher_accuracy(recogniser_runs):
    out = {}
    for name, pipe in recogniser_runs.items():
        r, probe = pipe.responses(RECOGNISER)["id"], pipe.model_probe(RECOGNISER)
        out[name] = (r.get(0, "resid_post"), float((r.logits.argmax(1) == probe.labels).mean()), len(probe))
    assert recogniser_runs["cifar"].model(RECOGNISER).normalisation_source == "option"
    assert recogniser_runs["default"].model(RECOGNISER).normalisation_source == "ImageNet default"
    assert out["cifar"][2] == out["default"][2] == 1000
    diff = np.abs(out["cifar"][0] - out["default"][0])
    assert diff.max() > 1e-2 * np.abs(out["cifar"][0]).max()  # other responses, not float noise
    assert out["cifar"][1] == 1.0  # it sees each photograph exactly, so it recognises every one
    assert out["default"][1] < 0.2  # ImageNet's statistics: about 8 grey levels off, nothing recognised (chance)


def test_the_model_sees_the_image_normalised_with_the_values_given():
    """torchvision resnet18 (random weights): what reaches conv1 is (image - mean) / std with the given values;
    with none given, ImageNet's."""
    spec = "torchvision:resnet18"
    for norm in (CIFAR, {}):
        pipe = _cifar_run(spec, 8, **norm)
        seen = []
        hook = pipe.model(spec).module.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
        try:
            pipe.responses(spec)
        finally:
            hook.remove()
        x = torch.from_numpy(pipe.model_probe(spec).images).float() / 255
        mean, std = (torch.tensor(norm.get(k) or d).view(1, 3, 1, 1) for k, d in (("mean", IMAGENET_MEAN),
                                                                                   ("std", IMAGENET_STD)))
        # The capture's forward is the last over the whole batch (discovery runs one before it, the faithfulness
        # check one over two of its images after it).
        whole = [t for t in seen if len(t) == len(x)][-1]
        torch.testing.assert_close(whole, (x - mean) / std, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen[-1], whole[:2])


def test_the_onnxruntime_engine_uses_the_given_normalisation():
    spec = "zoo:cifar-resnet20-synth32"
    got = {}
    for engine in ("torch", "onnxruntime"):
        for name, norm in (("cifar", CIFAR), ("default", {})):
            pipe = Pipeline(RunConfig(models=(spec,), probe="cifar10", images=16, input_size=32, engine=engine,
                                      progress=False, **norm))
            got[engine, name] = pipe.responses(spec)["id"].get(0, "resid_post")
    np.testing.assert_allclose(got["onnxruntime", "cifar"], got["torch", "cifar"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got["onnxruntime", "default"], got["torch", "default"], atol=1e-4, rtol=1e-4)
    assert np.abs(got["torch", "cifar"] - got["torch", "default"]).max() > 1e-2


def test_the_export_round_trips_the_normalisation(tmp_path, capsys):
    from resstream_assert.cli import main

    out = tmp_path / "r20.onnx"
    assert main(["export", "zoo:cifar-resnet20-synth32", str(out), "--mean", *map(str, CIFAR10_MEAN),
                 "--std", *map(str, CIFAR10_STD)]) == 0
    assert "normalisation in the metadata: mean 0.4914 0.4822 0.4465 std 0.247 0.2435 0.2616 (from: option)" \
        in capsys.readouterr().out
    back = load_model(str(out))
    assert (back.mean, back.std, back.normalisation_source) == (CIFAR10_MEAN, CIFAR10_STD, "ONNX metadata")
    over = load_model(str(out), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert (over.mean, over.std, over.normalisation_source) == ((0.5,) * 3, (0.25,) * 3, "option")
    # The file's responses are the torch model's under the recorded normalisation.
    onnx_r = Pipeline(RunConfig(models=(str(out),), probe="cifar10", images=16, progress=False)).responses(
        str(out), backend="onnx")["id"]
    torch_r = _cifar_run("zoo:cifar-resnet20-synth32", 16, **CIFAR).responses("zoo:cifar-resnet20-synth32")["id"]
    np.testing.assert_allclose(onnx_r.logits, torch_r.logits, atol=1e-4, rtol=1e-4)


def test_a_zoo_model_uses_its_card_and_a_torchvision_model_imagenet():
    zoo = load_model("zoo:cifar-resnet20-synth32")
    assert zoo.normalisation_source == "zoo card"
    tv = load_model("torchvision:resnet18")
    assert (tv.mean, tv.std, tv.normalisation_source) == (IMAGENET_MEAN, IMAGENET_STD, "ImageNet default")


def test_onnx_metadata_that_is_not_a_normalisation_is_refused(tmp_path):
    import onnx

    from resstream_assert.loading.onnx_export import export_onnx

    path = export_onnx(load_model("tests.analytic_models:linear_block", input_size=32), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for p in model.metadata_props:
        if p.key == "resstream.std":
            p.value = "0.2,0,0.2"
    onnx.save(model, str(path))
    with pytest.raises(ModelSpecError, match=r"resstream.std = '0.2,0,0.2' is not a normalisation.*--resstream-mean"):
        load_model(str(path))
    assert load_model(str(path), mean=CIFAR10_MEAN, std=CIFAR10_STD).mean == CIFAR10_MEAN  # the option rescues it


def test_normalisation_values_are_checked_in_python_too():
    with pytest.raises(ConfigError, match=r"--resstream-mean was given without --resstream-std"):
        RunConfig(mean=CIFAR10_MEAN)
    with pytest.raises(ConfigError, match=r"--resstream-std 0.2 0 0.2: must be > 0"):
        RunConfig(mean=CIFAR10_MEAN, std=(0.2, 0, 0.2))
    with pytest.raises(ConfigError, match=r"must be 3 numbers"):
        load_model("torchvision:resnet18", mean=(0.5, 0.5), std=(0.2, 0.2))
    cfg = build_run_config({"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "resize": "stretch"})
    assert cfg.to_dict()["mean"] == list(CIFAR10_MEAN) and cfg.to_dict()["resize"] == "stretch"
    assert not {"mean", "std", "resize", "class_index"} & set(RunConfig().to_dict())  # defaults: reports unchanged


def _write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_resize_crop_is_the_default_and_stretch_keeps_the_whole_image(tmp_path):
    wide = np.zeros((32, 96, 3), np.uint8)  # left third red, middle green, right third blue
    wide[:, :32, 0], wide[:, 32:64, 1], wide[:, 64:, 2] = 255, 255, 255
    _write_image(tmp_path / "a" / "wide.png", wide)
    default, crop, stretch = (folder_probe(tmp_path, size=32, **kw).images[0] for kw in
                              ({}, {"resize": "crop"}, {"resize": "stretch"}))
    np.testing.assert_array_equal(default, crop)
    channel_share = lambda img: img.reshape(3, -1).mean(1) / 255  # noqa: E731
    assert channel_share(crop)[1] > 0.95 and channel_share(crop)[[0, 2]].max() < 0.05  # the centre: green only
    assert np.allclose(channel_share(stretch), 1 / 3, atol=0.05)  # the whole image, squeezed
    assert RunConfig().resize == "crop"
    with pytest.raises(ProbeError, match="use one of crop, stretch"):
        load_probe(str(tmp_path), n=1, size=32, resize="fit")


WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")


def _wnid_folder(root: Path, wnids, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for w in wnids:
        for i in range(per_class):
            _write_image(root / w / f"{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return root


def _class_index(path: Path, wnids=WNIDS) -> Path:
    path.write_text(json.dumps({str(i): [w, f"class {i}"] for i, w in enumerate(wnids)}))
    return path


def test_a_wnid_folder_with_every_class_maps_in_sorted_order(tmp_path):
    folder = _wnid_folder(tmp_path / "probe", WNIDS[::-1])  # written in another order; labels follow sorted ids
    probe = folder_probe(folder, size=32)
    assert probe.class_names == WNIDS
    assert [(n.split("/")[0], int(lab)) for n, lab in zip(probe.names, probe.labels)][::2] == \
        [(w, i) for i, w in enumerate(WNIDS)]
    assert label_problem(SimpleNamespace(class_names=None, num_classes=5), probe, str(folder)) == ""


def test_a_partial_wnid_folder_is_refused_for_c10_without_a_map_and_accepted_with_one(tmp_path):
    folder = _wnid_folder(tmp_path / "probe", (WNIDS[4], WNIDS[1]))
    model = SimpleNamespace(class_names=None, num_classes=5)
    unmapped = folder_probe(folder, size=32)
    why = label_problem(model, unmapped, str(folder))
    assert "2 WordNet-id class folders" in why and "--resstream-class-index FILE" in why
    assert "imagenet_class_index.json" in why
    index = _class_index(tmp_path / "index.json")
    mapped = folder_probe(folder, size=32, class_index=str(index))
    assert sorted(set(mapped.labels.tolist())) == [1, 4]  # the model's indices of n01443537 and n01494475
    assert all(WNIDS[lab] == n.split("/")[0] for n, lab in zip(mapped.names, mapped.labels))
    assert mapped.class_names == WNIDS and label_problem(model, mapped, str(folder)) == ""
    with pytest.raises(ProbeError, match=r"n01494475 of the probe are not in the class-index file"):
        folder_probe(folder, size=32, class_index=str(_class_index(tmp_path / "short.json", WNIDS[:3])))


def test_c10_says_how_to_map_a_partial_wnid_folder(tmp_path):
    folder = _wnid_folder(tmp_path / "probe", WNIDS[:3], per_class=20)  # 3 of the model's 10 classes
    cfg = RunConfig(models=("tests.analytic_models:linear_block",), probe=str(folder), images=60, input_size=32,
                    progress=False)
    result = Pipeline(cfg).evaluate("tests.analytic_models:linear_block", "torch", ["C10"])["C10"]
    assert result.verdict.value == "not_applicable"
    assert "--resstream-class-index FILE" in result.reason


def test_the_header_and_the_report_state_the_preprocessing(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    report = tmp_path / "r.json"
    pytester.makepyfile("def test_loaded(resstream_model):\n    assert resstream_model.mean[0] == 0.4914\n")
    pytester.makeini("[pytest]\nresstream_std = 0.2470, 0.2435, 0.2616\n")  # the ini form: commas allowed
    result = pytester.runpytest_subprocess(
        "--resstream-model", "tests.analytic_models:linear_block", "--resstream-input-size", "32",
        "--resstream-images", "8", "--resstream-no-cache", "--resstream-probe", "cifar10", "--resstream-resize",
        "stretch", "--resstream-mean", *map(str, CIFAR10_MEAN),
        "--resstream-report-json", str(report), "--resstream-report-html", str(tmp_path / "r.html"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*probe cifar10 (resize stretch); normalisation: mean 0.4914 0.4822 0.4465 std "
                                 "0.247 0.2435 0.2616 (from: option)*"])
    data = json.loads(report.read_text())
    info = data["model_info"]["tests.analytic_models:linear_block[torch]"]["normalisation"]
    assert info == {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "source": "option"}
    assert data["config"]["resize"] == "stretch" and data["config"]["mean"] == list(CIFAR10_MEAN)
    assert "mean 0.4914 0.4822 0.4465 std 0.247 0.2435 0.2616 (from: option)" in (tmp_path / "r.html").read_text()


def test_a_baseline_made_under_another_normalisation_is_not_compared():
    from resstream_assert.gate.compat import incompatibilities

    info = {"architecture": "zoo:x", "input_size": 32, "blocks": [], "probe": "0" * 64, "images": 16}
    norm = {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "source": "option"}
    imagenet = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "source": "zoo card"}
    base = {"config": {}, "model_info": {"m[torch]": dict(info, normalisation=imagenet)}}
    now = {"config": {}, "model_info": {"m[torch]": dict(info, normalisation=norm)}}
    problems, _ = incompatibilities(base, now, {("m", "torch"): "m"})
    assert problems == ["m[torch]: normalisation mean 0.4914 0.4822 0.4465 std 0.247 0.2435 0.2616 (from: option), "
                        "the baseline's mean 0.485 0.456 0.406 std 0.229 0.224 0.225 (from: zoo card)"]
    same = {"config": {}, "model_info": {"m[torch]": dict(info, normalisation=dict(norm, source="ONNX metadata"))}}
    assert incompatibilities(same, now, {("m", "torch"): "m"})[0] == []  # the same numbers, wherever they came from
    old = {"config": {}, "model_info": {"m[torch]": info}}  # written before the normalisation was recorded
    assert incompatibilities(old, now, {("m", "torch"): "m"})[0] == []
