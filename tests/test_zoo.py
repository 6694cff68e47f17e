"""The model zoo: registry, architectures, verified loading, accuracy, and the training recipe."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from resstream_assert import zoo
from resstream_assert.errors import CheckpointError, ModelSpecError
from resstream_assert.stimuli.synthetic import CLASS_NAMES, make_split

NAMES = ["resnet18-synth96", "bottleneck-synth64", "cifar-resnet20-synth32"]  # trained on the generator's shapes
NATURAL = "resnet18-cifar64"  # trained on CIFAR-10 photographs
NATURAL_ALL = [NATURAL, "cifar-resnet20-cifar32"]  # the second family trained on them
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _trained(name):
    entry = zoo.get(name)
    if not entry.weights_path.is_file() or entry.sha256 is None:
        pytest.skip(f"{name} is not trained yet: run python -m model_zoo.train {name}")
    return entry


def test_registry_lists_the_synthetic_models_then_the_natural_one():
    assert [e.name for e in zoo.entries()] == NAMES + NATURAL_ALL
    for e in zoo.entries()[:3]:
        assert e.num_classes == len(CLASS_NAMES) and e.class_names == CLASS_NAMES
        assert e.mean == (0.485, 0.456, 0.406) and e.std == (0.229, 0.224, 0.225)
    for name, size in zip(NATURAL_ALL, (64, 32)):
        natural = zoo.get(name)
        assert tuple(natural.class_names) == CIFAR_CLASSES and natural.input_size == size and natural.probe == "cifar10"
        assert natural.mean == (0.4914, 0.4822, 0.4465) and natural.std == (0.247, 0.2435, 0.2616)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ModelSpecError, match="resnet18-synth96.*resstream zoo"):
        zoo.get("resnet999")


@pytest.mark.parametrize("name, final_hw", [("resnet18-synth96", 3), ("bottleneck-synth64", 2),
                                            ("cifar-resnet20-synth32", 8), (NATURAL, 2),
                                            ("cifar-resnet20-cifar32", 8)])
def test_architectures(name, final_hw):
    entry = zoo.get(name)
    model = entry.build().eval()
    last = model.layer4 if hasattr(model, "layer4") else model.layer3
    seen = {}
    last.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))  # returns None
    with torch.no_grad():
        out = model(torch.zeros(1, 3, entry.input_size, entry.input_size))
    assert out.shape == (1, entry.num_classes) and seen["shape"][-1] == final_hw


def test_cifar_resnet20_module_names():
    model = zoo.get("cifar-resnet20-synth32").build()
    names = dict(model.named_modules())
    assert {"conv1", "bn1", "layer1", "layer2", "layer3", "linear"} <= set(names)
    assert {"layer2.0.conv1", "layer2.0.bn2", "layer2.0.shortcut"} <= set(names)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 19  # 20 layers with the linear
    x = torch.randn(1, 16, 8, 8)
    pad = names["layer2.0.shortcut"](x)  # option A: subsample, zero-pad 8 channels each side
    assert pad.shape == (1, 32, 4, 4) and torch.equal(pad[:, 8:24], x[:, :, ::2, ::2])
    assert not pad[:, :8].any() and not pad[:, 24:].any()


@pytest.mark.parametrize("name", NAMES + NATURAL_ALL)
def test_every_model_has_weights_and_card(name):
    entry = zoo.get(name)
    assert entry.weights_path.is_file(), f"missing: python -m model_zoo.train {name}"
    card = json.loads((zoo.CARDS_DIR / f"{name}.json").read_text())
    assert (zoo.CARDS_DIR / entry.card).is_file()
    assert card["sha256"] == entry.sha256 and entry.accuracy == card["accuracy"]
    assert set(entry.zoom_accuracy) >= {"1.0", "1.5", "2.0"}
    assert entry.weights_path.stat().st_size <= 25 * 2**20


@pytest.mark.parametrize("name", NAMES)
def test_loaded_model_classifies_far_above_chance(name):
    entry = _trained(name)
    model = entry.load()
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    images, labels, _ = make_split("test", 60, entry.input_size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(entry.mean).view(1, 3, 1, 1)) / torch.tensor(entry.std).view(1, 3, 1, 1)
    with torch.no_grad():
        acc = (model(x).argmax(1).numpy() == labels).mean()
    assert acc >= 0.6, f"{name}: accuracy {acc:.2f} on 60 test images (chance 0.10)"


@pytest.mark.parametrize("name", NATURAL_ALL)
def test_natural_model_accuracy_on_its_shipped_probe_matches_its_card(name):
    """The 1,000 shipped CIFAR-10 test photographs, read as the pipeline reads them (PIL bilinear to the model's
    size), through the weights as the zoo loads them: within a point of the card's figure, and above 80%."""
    from resstream_assert.stimuli.probe import load_probe

    entry = _trained(name)
    card = json.loads((zoo.CARDS_DIR / f"{name}.json").read_text())
    probe = load_probe(entry.probe, n=1000, size=entry.input_size)
    assert len(probe) == 1000 and np.bincount(probe.labels).tolist() == [100] * 10
    model = entry.load()
    mean, std = torch.tensor(entry.mean).view(1, 3, 1, 1), torch.tensor(entry.std).view(1, 3, 1, 1)
    hits = 0
    with torch.no_grad():
        for i, batch in enumerate(probe.batches(250)):
            x = (torch.from_numpy(batch) - mean) / std
            hits += int((model(x).argmax(1).numpy() == probe.labels[i * 250:(i + 1) * 250]).sum())
    acc = hits / len(probe)
    assert abs(acc - card["probe"]["accuracy"]) <= 0.01 and acc >= 0.80, (acc, card["probe"])
    assert card["accuracy"] >= 0.80  # the 10,000 JPEG test images (the floor)


def test_tampered_or_missing_weights_raise(tmp_path, monkeypatch):
    entry = _trained("cifar-resnet20-synth32")
    copy = tmp_path / entry.weights_file
    shutil.copy(entry.weights_path, copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF  # flip one byte of the tensor data
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="altered.*python -m model_zoo.train cifar-resnet20-synth32"):
        entry.load()
    copy.unlink()
    with pytest.raises(CheckpointError, match="missing.*python -m model_zoo.train"):
        entry.load()


def test_train_smoke_run_loss_falls_and_card_loads(tmp_path, monkeypatch):
    name = "cifar-resnet20-synth32"
    cmd = [sys.executable, "-m", "model_zoo.train", name, "--steps", "30", "--train-size", "256",
           "--batch-size", "32", "--test-size", "40", "--threads", "1", "--out-dir", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    card = json.loads((tmp_path / "cards" / f"{name}.json").read_text())
    curve = card["loss_curve"]
    assert np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    assert card["steps"] == 30 and card["fp16_check"]["passed"] in (True, False)
    assert (tmp_path / "cards" / f"{name}.md").is_file()
    # The zoo reads the new card and verifies the new weights.
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(zoo, "CARDS_DIR", tmp_path / "cards")
    assert zoo.get(name).sha256 == card["sha256"]
    assert not zoo.get(name).load().training
    # --repack re-checks the stored weights and keeps the card's training facts.
    from model_zoo.train import repack
    again = repack(name, out_dir=tmp_path, threads=1)
    assert again["loss_curve"] == curve and again["repack"]["accuracy_of_stored_weights"] is not None
    assert zoo.get(name).sha256 == again["sha256"] and not zoo.get(name).load().training
