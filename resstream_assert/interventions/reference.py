"""C11's intervention: the papers' reference lesions of torchvision ResNet18 on ImageNet-val at s = 1.

Runs only for ``torchvision:resnet18@<IMAGENET1K_V1 weights>`` with the 1000-class
validation folder as the probe; everything else gets a reason instead. Images are read
in shards with the author's preprocessing (PIL Resize(256) -> CenterCrop(224)), never all
at once (50,000 images at 224 px would be 7.5 GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions.lesion_runner import _Runner, lesion_correctness
from resstream_assert.paper import SCALE_INVARIANT_CHANNELS


@dataclass(frozen=True)
class ReferenceData:
    """C11 inputs: top-1 accuracies (fractions) on a labeled ImageNet-val folder; ``reason`` when not run."""

    n_images: int = 0
    acc_empty: float = float("nan")
    acc_lesion: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class ReferenceRequest:
    """Mean-ablate the papers' channel sets (spec §5.2) of torchvision ResNet18 on ImageNet-val.

    Example:
        >>> ReferenceRequest().run(env).reason  # doctest: +SKIP
        'C11 compares with the papers' numbers for torchvision resnet18 ...'
    """

    sets: tuple[tuple[str, tuple[int, ...]], ...] = tuple(SCALE_INVARIANT_CHANNELS.items())

    @property
    def key(self) -> tuple:
        return ("reference", self.sets)

    def run(self, env: InterventionEnv) -> ReferenceData:
        return reference_data(env.loaded, env.rmap, env.probe_source, device=env.device, counters=env.counters,
                              sets=dict(self.sets))


def _reference_problem(loaded, source) -> str:
    from pathlib import Path

    spec = str(loaded.spec)
    if not (spec.startswith("torchvision:resnet18@") and loaded.num_classes == 1000 and not loaded.control):
        return (f"C11 compares with the papers' numbers for torchvision resnet18 with ImageNet weights "
                f"(IMAGENET1K_V1); this model is {spec}")
    if loaded.backend != "torch":
        return f"C11's lesions run on the torch backend only (this is {loaded.backend})"
    if source is None or str(source) == "embedded" or not Path(source).is_dir():
        return "C11 needs the labeled ImageNet validation folder (1000 class folders) as --resstream-probe"
    n_cls = sum(1 for d in Path(source).iterdir() if d.is_dir())
    return "" if n_cls == 1000 else f"C11 needs ImageNet-val's 1000 class folders; {source} has {n_cls}"


def imagenet_shards(folder, shard: int = 1024):
    """Yield ``(uint8 (n, 3, 224, 224), labels)`` from an ImageNet-style folder, author's preprocessing.

    PIL bilinear (antialiased) Resize(256) of the shorter side, then CenterCrop(224), as
    torchvision's ``Resize(256), CenterCrop(224)`` on PIL images (spec C11).

    Example:
        >>> next(imagenet_shards("imagenet/val", 8))[0].shape  # doctest: +SKIP
        (8, 3, 224, 224)
    """
    from pathlib import Path

    from PIL import Image

    from resstream_assert.stimuli.probe import is_image

    classes = sorted(d for d in Path(folder).iterdir() if d.is_dir())
    files = [(f, y) for y, d in enumerate(classes) for f in sorted(d.rglob("*")) if is_image(f)]
    for i in range(0, len(files), shard):
        imgs = []
        for f, _ in files[i:i + shard]:
            with Image.open(f) as raw:
                im = raw.convert("RGB")
                w, h = im.size
                nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
                im = im.resize((nw, nh), Image.Resampling.BILINEAR)
                top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
                imgs.append(np.asarray(im.crop((left, top, left + 224, top + 224)), np.uint8))
        yield np.stack(imgs).transpose(0, 3, 1, 2), np.array([y for _, y in files[i:i + shard]], np.int64)


def reference_data(loaded, rmap, source, *, device: str = "cpu", counters: dict | None = None,
                   sets: Mapping[str, Sequence[int]] = SCALE_INVARIANT_CHANNELS,
                   shard: int = 1024) -> ReferenceData:
    """C11's accuracies: empty lesion and each reference set at s = 1 (a ``reason`` when not applicable).

    Two passes over the folder (each image decoded twice in all): the ablation values of
    every block (mean ReLU center unit over all images), then the lesions. Meant for a
    GPU: 50,000 images at 224 px.

    Example:
        >>> ref, why = reference_data(loaded, rmap, "imagenet/val")  # doctest: +SKIP
    """
    why = _reference_problem(loaded, source)
    if why:
        return ReferenceData(reason=why)
    counters = {} if counters is None else counters
    blocks = {name: rmap[name] for name in sets}
    runners = {name: _Runner(loaded, rmap, b, device, 256, counters) for name, b in blocks.items()}
    sums: dict[str, np.ndarray] = {}  # per set: the sum over images of the block's ablation values
    n = 0
    for images, _ in imagenet_shards(source, shard):
        for name, run in runners.items():
            sums[name] = sums.get(name, 0.0) + run.values(images) * len(images)
        n += len(images)
    hits = dict.fromkeys(sets, 0)
    empty = 0
    for images, labels in imagenet_shards(source, shard):
        for i, (name, chans) in enumerate(sets.items()):
            corr, intact, _, _ = lesion_correctness(loaded, rmap, blocks[name], images, labels, (1.0,),
                                                    [np.asarray(chans)], values=sums[name] / n, device=device,
                                                    counters=counters)
            hits[name] += int(corr.sum())
            empty += int(intact.sum()) if i == 0 else 0
    return ReferenceData(n, empty / n, {name: h / n for name, h in hits.items()})
