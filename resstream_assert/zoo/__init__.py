"""The zoo: small residual networks trained by this project, shipped with the package.

Each model has an architecture here, weights under ``zoo/weights`` and a card under
``zoo/cards`` (``NAME.json``: sha256, accuracy, zoom table, recipe, class names; ``NAME.md``:
the same for people). The JSON card is written by ``python -m model_zoo.train NAME`` (the
training code lives in the repository's ``model_zoo/`` folder, outside the wheel) and read
lazily here, so the registry's numbers are data, never hand-copied constants.

Example:
    >>> from resstream_assert import zoo
    >>> [e.name for e in zoo.entries()]
    ['resnet18-synth96', 'bottleneck-synth64', 'cifar-resnet20-synth32', 'resnet18-cifar64', 'cifar-resnet20-cifar32']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from resstream_assert.errors import CheckpointError, ModelSpecError

# Module-level so tests (and users with a private copy) can point the zoo elsewhere.
ZOO_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = ZOO_DIR / "weights"
CARDS_DIR = ZOO_DIR / "cards"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Channel statistics of the CIFAR-10 training images (the values public CIFAR code uses).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10  # every zoo model has ten classes; the names come from its card


def _resnet18(num_classes: int):
    import torchvision
    return torchvision.models.resnet18(num_classes=num_classes)


def _bottleneck(num_classes: int):
    from torchvision.models.resnet import Bottleneck, ResNet
    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=num_classes)


def _cifar20(num_classes: int):
    from resstream_assert.zoo.cifar_resnet import resnet20
    return resnet20(num_classes)


@dataclass(frozen=True)
class Recipe:
    """What is fixed about a zoo model before it is trained: architecture, input, preprocessing, probe.

    ``probe`` names the probe set the model is tested on by default: ``embedded`` (the synthetic
    shapes the synthetic models were trained on) or ``cifar10`` (natural photographs shipped with
    the package, labelled with the CIFAR-10 classes).
    """

    arch: str
    build: Callable[[int], Any]
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    probe: str = "embedded"


_RECIPES: dict[str, Recipe] = {
    "resnet18-synth96": Recipe("torchvision resnet18 (BasicBlock [2,2,2,2]); layer4 is 3x3 at 96 px",
                               _resnet18, 96),
    "bottleneck-synth64": Recipe("torchvision ResNet(Bottleneck, [1,1,1,1]); every stage has a projection "
                                 "shortcut (layer1 included); layer4 is 2x2 at 64 px", _bottleneck, 64),
    "cifar-resnet20-synth32": Recipe("CIFAR ResNet-20 (He et al.; 3x3 BasicBlocks, 16/32/64 channels, "
                                     "option-A zero-pad identity shortcut)", _cifar20, 32),
    "resnet18-cifar64": Recipe("torchvision resnet18 (BasicBlock [2,2,2,2], ImageNet stem) trained on CIFAR-10 "
                               "photographs upsampled to 64 px; layer4 is 2x2", _resnet18, 64,
                               CIFAR10_MEAN, CIFAR10_STD, probe="cifar10"),
    "cifar-resnet20-cifar32": Recipe("CIFAR ResNet-20 (He et al.; 3x3 BasicBlocks, 16/32/64 channels, option-A "
                                     "zero-pad identity shortcut) trained on CIFAR-10 photographs at 32 px",
                                     _cifar20, 32, CIFAR10_MEAN, CIFAR10_STD, probe="cifar10"),
}


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: architecture, preprocessing and the facts from its card.

    Example:
        >>> e = get("cifar-resnet20-synth32")
        >>> e.input_size, e.num_classes
        (32, 10)
    """

    name: str
    arch: str
    input_size: int
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    probe: str
    weights_file: str
    sha256: str | None
    accuracy: float | None
    zoom_accuracy: dict[str, float] | None = field(hash=False)
    card: str

    @property
    def weights_path(self) -> Path:
        """Where the weights file is expected (under ``WEIGHTS_DIR``)."""
        return WEIGHTS_DIR / self.weights_file

    def build(self):
        """The bare architecture with random weights.

        Example:
            >>> type(get("resnet18-synth96").build()).__name__
            'ResNet'
        """
        return _RECIPES[self.name].build(self.num_classes)

    def load(self):
        """Build, verify the weights' sha256, load them (fp16 stored, fp32 returned), eval().

        Raises CheckpointError when the file is missing, altered, or does not fit.

        Example:
            >>> model = get("cifar-resnet20-synth32").load()  # doctest: +SKIP
        """
        import torch
        from safetensors.torch import load_file

        path = self.weights_path
        redo = f"Retrain it with: python -m model_zoo.train {self.name}"
        if not path.is_file():
            raise CheckpointError(f"Zoo model {self.name!r}: weights file {path.name} is missing from "
                                  f"{path.parent}. {redo} (or reinstall the package).")
        if self.sha256 is None:
            raise CheckpointError(f"Zoo model {self.name!r}: its card {CARDS_DIR.name}/{self.name}.json is "
                                  f"missing, so the weights cannot be verified. {redo}.")
        actual = _sha256(path)
        if actual != self.sha256:
            raise CheckpointError(f"Zoo model {self.name!r}: weights file {path.name} was altered (sha256 "
                                  f"{actual[:12]}... but its card records {self.sha256[:12]}...). {redo}.")
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
        model = self.build()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"Zoo model {self.name!r}: weights do not fit the architecture ({exc}). "
                                  f"{redo}.") from exc
        return model.eval().to(torch.float32)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(name: str) -> dict | None:
    """The JSON card of a model, or None when it has not been trained yet.

    Example:
        >>> read_card("cifar-resnet20-synth32")["epochs"]  # doctest: +SKIP
        30
    """
    path = CARDS_DIR / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def get(name: str) -> ZooEntry:
    """Look up a zoo model by name (its card is read now, so a retrain is picked up).

    Example:
        >>> get("resnet18-synth96").input_size
        96
    """
    if name not in _RECIPES:
        raise ModelSpecError(f"Unknown zoo model {name!r}. Known: {', '.join(_RECIPES)}. "
                             "Run 'resstream zoo' to list them with their accuracies.")
    recipe = _RECIPES[name]
    card = read_card(name) or {}
    zoom = card.get("zoom_accuracy")
    classes = tuple(card.get("class_names", ()))  # the card is the one source of a model's classes
    return ZooEntry(name=name, arch=recipe.arch, input_size=recipe.input_size,
                    num_classes=len(classes) or NUM_CLASSES, class_names=classes, mean=recipe.mean,
                    std=recipe.std, probe=recipe.probe,
                    weights_file=card.get("weights_file", f"{name}.safetensors"),
                    sha256=card.get("sha256"), accuracy=card.get("accuracy"),
                    zoom_accuracy=dict(zoom) if zoom else None, card=f"{name}.md")


def entries() -> list[ZooEntry]:
    """All zoo models, in registry order.

    Example:
        >>> len(entries())
        5
    """
    return [get(name) for name in _RECIPES]


def names() -> tuple[str, ...]:
    """The registered model names.

    Example:
        >>> names()[0]
        'resnet18-synth96'
    """
    return tuple(_RECIPES)
