"""What ships of a natural-image zoo model: the last epoch's weights (fp16 when the check passes) and its
card (accuracy on the test photographs, by zoom and under the control variants, and on the shipped
probe, with how it was trained), written into ``resstream_assert/zoo/``.

``python -m model_zoo.train NAME`` runs :func:`main` here: it trains (:mod:`model_zoo.natural`), then
writes what ships.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from model_zoo.natural import (CIFAR10_CLASSES, CONTROL_VARIANTS, DEFAULT_DATA, NATURAL_RECIPES, TABLE_ZOOMS,
                               _normalize, load_cifar10_jpeg, make_probe, train_natural, upsample_u8)
from resstream_assert import zoo


def _variant_accuracy(model, images_u8: np.ndarray, labels: np.ndarray, entry: zoo.ZooEntry) -> dict:
    from model_zoo.shipping import predict

    x = torch.from_numpy(upsample_u8(images_u8, entry.input_size)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels)
    acc = lambda v: round(float((predict(model, x, v, mean=entry.mean, std=entry.std).argmax(1) == y)  # noqa: E731
                                .float().mean()), 4)
    from resstream_assert.stimuli.variants import zoom_variant

    return {"zoom": {f"{z:.1f}": acc(zoom_variant(z)) for z in TABLE_ZOOMS},
            "controls": {v: acc(v) for v in CONTROL_VARIANTS}, "test_x": x}


def finalize(name: str, *, work_dir: Path | None = None, data_dir: Path = DEFAULT_DATA,
             out_dir: Path | None = None, command: str = "") -> dict:
    """Write the last epoch's weights (fp16 when the check passes) and the card into the zoo.

    Example:
        >>> finalize("resnet18-cifar64")  # doctest: +SKIP
    """
    import torchvision
    from safetensors.torch import load_file

    from model_zoo.shipping import _save_weights, _weights_fields, _write_card
    from resstream_assert.stimuli.probe import SHIPPED, load_probe

    recipe, entry = NATURAL_RECIPES[name], zoo.get(name)
    work = Path(work_dir) if work_dir is not None else Path("runs") / name
    out_dir = Path(out_dir) if out_dir is not None else zoo.ZOO_DIR
    history = json.loads((work / "history.json").read_text())
    data = load_cifar10_jpeg(data_dir, work.parent / "cifar10-jpeg.npz")
    model = entry.build()
    model.load_state_dict(load_file(str(work / f"epoch-{len(history['loss']):03d}.safetensors")))
    model.eval()
    variants = _variant_accuracy(model, data["test_x"], data["test_y"], entry)
    check, wpath = _save_weights(entry, model, variants.pop("test_x"), out_dir, history["seed"])
    card = {
        "name": name, "arch": entry.arch, "input_size": entry.input_size, "num_classes": 10,
        "class_names": list(CIFAR10_CLASSES), "mean": list(entry.mean), "std": list(entry.std),
        **_weights_fields(wpath, check), "accuracy": variants["zoom"]["1.0"], "zoom_accuracy": variants["zoom"],
        "variant_accuracy": variants["controls"], "seed": history["seed"], "epochs": len(history["loss"]),
        "steps": len(history["loss"]) * history["steps_per_epoch"], "batch_size": recipe.batch_size,
        "optimizer": f"SGD(momentum=0.9, nesterov=True, weight_decay={recipe.weight_decay})",
        "schedule": f"OneCycleLR(max_lr={recipe.max_lr:g}, pct_start={recipe.pct_start}, cosine)",
        "data": {"source": "CIFAR-10 as JPEG files (shared/data/cifar10-jpeg: 50,000 train, 10,000 test)",
                 "train_size": len(data["train_x"]), "test_size": len(data["test_x"]),
                 "augmentation": f"horizontal flip p=0.5; random crop of 32 px after {recipe.crop_pad} px reflect "
                                 f"padding; bilinear upsampling to {entry.input_size} px",
                 "evaluation": f"PIL bilinear upsampling of the 32 px JPEG files to {entry.input_size} px (as "
                               "the probe loader reads them)"},
        "loss_per_epoch": history["loss"], "train_acc_per_epoch": history["train_acc"],
        "test_acc_per_epoch": history["test_acc"], "wall_time_s": round(sum(history["epoch_wall_s"]), 1),
        "threads": history["threads"], "machine": platform.machine(), "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__, "numpy_version": np.__version__,
        "command": command or f"python -m model_zoo.train {name}",
        "trained_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _write_card(card, out_dir, markdown=_markdown)
    # The accuracy a user can check: the stored (fp16) weights as the zoo loads them, on the shipped probe.
    stored = entry.build().eval()
    stored.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(wpath)).items()})
    probe = load_probe(entry.probe, n=None, size=entry.input_size)
    card["probe"] = {"name": entry.probe, "file": SHIPPED[entry.probe], "n_images": len(probe),
                     "accuracy": _probe_accuracy(stored, probe, entry)}
    _write_card(card, out_dir, markdown=_markdown)
    print(f"[{name}] card written: accuracy {card['accuracy']}, probe accuracy {card['probe']['accuracy']}, "
          f"{card['weights_dtype']}, {card['weights_bytes']} bytes", flush=True)
    return card


@torch.no_grad()
def _probe_accuracy(model, probe, entry: zoo.ZooEntry) -> float:
    x = torch.from_numpy(probe.images).float() / 255
    pred = torch.cat([model(_normalize(x[i:i + 250], entry)).argmax(1) for i in range(0, len(x), 250)])
    return round(float((pred.numpy() == probe.labels).mean()), 4)


def _markdown(card: dict) -> str:
    zoom = "\n".join(f"| {z} | {a:.4f} |" for z, a in card["zoom_accuracy"].items())
    ctrl = "\n".join(f"| {v} | {a:.4f} |" for v, a in card["variant_accuracy"].items())
    fp, d, pr = card["fp16_check"], card["data"], card.get("probe")
    probe = (f"- Shipped probe `{pr['name']}` ({pr['n_images']} test photographs, `{pr['file']}`): accuracy "
             f"**{pr['accuracy']:.4f}** with the stored weights as the zoo loads them.\n") if pr else ""
    return f"""# {card['name']}

{card['arch']}

- Input: {card['input_size']} px RGB, normalised with the CIFAR-10 mean {card['mean']} and std {card['std']}; \
{card['num_classes']} classes: {', '.join(card['class_names'])}.
- Accuracy on the {d['test_size']} JPEG test images: **{card['accuracy']:.4f}** ({d['evaluation']}).
{probe}- Weights: `weights/{card['weights_file']}` ({card['weights_bytes']} bytes, {card['weights_dtype']}), sha256 \
`{card['sha256']}`.
- fp16 check on the test images: max |softmax diff| {fp['max_softmax_abs_diff']:.2e} (tolerance \
{fp['tolerance']['max_softmax_abs_diff']}), argmax agreement {fp['argmax_agreement']:.4f} (needs >= \
{fp['tolerance']['min_argmax_agreement']}); passed: {fp['passed']}.

## Accuracy vs zoom (centre crop of side H/z, bilinear resize back)

| zoom | accuracy |
|---|---|
{zoom}

## Accuracy under other variants

| variant | accuracy |
|---|---|
{ctrl}

## Training

- Data: {d['source']}; {d['train_size']} training images; augmentation: {d['augmentation']}.
- Optimizer: {card['optimizer']}; schedule: {card['schedule']}; batch {card['batch_size']}; epochs {card['epochs']}; \
steps {card['steps']}; seed {card['seed']}.
- Test accuracy by epoch (epoch 0 = initialisation): {card['test_acc_per_epoch']}.
- Loss by epoch: {card['loss_per_epoch']}; train accuracy by epoch: {card['train_acc_per_epoch']}.
- Wall time: {card['wall_time_s']:.0f} s of training on {card['threads']} CPU thread(s) of a shared 2-core machine \
({card['machine']}); torch {card['torch_version']}, torchvision {card['torchvision_version']}.
- Command: `{card['command']}`
- Trained at: {card['trained_at']}
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m model_zoo.train NAME`` for a natural-image model: train or resume, then write the card."""
    argv = sys.argv[1:] if argv is None else argv
    import model_zoo.natural as natural

    p = argparse.ArgumentParser(prog="python -m model_zoo.train", description=(natural.__doc__ or "").splitlines()[0])
    p.add_argument("name", nargs="?", choices=list(NATURAL_RECIPES))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.tar.gz and test.tar.gz")
    p.add_argument("--work-dir", type=Path, default=None, help="epoch checkpoints (default: runs/NAME)")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (20)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--make-probe", action="store_true", help="write the shipped probe set and exit")
    args = p.parse_args(argv)
    if args.make_probe:
        print(make_probe(args.data))
        return 0
    if args.name is None:
        p.error("name a model to train, or pass --make-probe")
    train_natural(args.name, data_dir=args.data, work_dir=args.work_dir, epochs=args.epochs, threads=args.threads)
    finalize(args.name, work_dir=args.work_dir, data_dir=args.data,
             command="python -m model_zoo.train " + " ".join(argv))
    return 0
