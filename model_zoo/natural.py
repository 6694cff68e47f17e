"""Train a zoo model on natural images: the CIFAR-10 JPEG copy in ``shared/data/cifar10-jpeg``.

Usage::

    python -m model_zoo.train resnet18-cifar64 [--data DIR] [--work-dir DIR] [--epochs E]

Nothing here runs for a user: the data is read once (both archives decoded into memory and
cached as one ``.npz`` in the work folder), the weights it produces are what ships.

Training is resumable. The work folder (default ``runs/NAME``, outside the package and
ignored by git) gets, after every epoch ``e``:

- ``epoch-EEE.safetensors``: the fp32 weights at the end of epoch ``e`` (``epoch-000`` is the
  seeded initialisation), for ``resstream trend`` (claims over training);
- ``resume.pt``: weights, optimizer and scheduler state and the history so far; a rerun of
  the same command continues from it.

The data order of epoch ``e`` is drawn from ``seed + e``, so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# Channel statistics of the CIFAR-10 training set (the usual values in public CIFAR code).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-jpeg"


@dataclass(frozen=True)
class NaturalRecipe:
    """How one natural-image zoo model is trained (sized for ~1.5 h on 2 CPU cores)."""

    arch: str
    input_size: int
    epochs: int = 20
    batch_size: int = 128
    max_lr: float = 0.15
    weight_decay: float = 5e-4
    pct_start: float = 0.25
    crop_pad: int = 4  # random-crop padding in pixels of the 32 px original


NATURAL_RECIPES = {
    "resnet18-cifar64": NaturalRecipe(arch="torchvision.resnet18", input_size=64),
    "cifar-resnet20-cifar32": NaturalRecipe(arch="resstream_assert.zoo.cifar_resnet.resnet20", input_size=32,
                                            epochs=30, max_lr=0.2),
}


def build(recipe: NaturalRecipe) -> torch.nn.Module:
    """The recipe's architecture with 10 outputs and seeded-by-caller random weights.

    Example:
        >>> type(build(NATURAL_RECIPES["resnet18-cifar64"])).__name__
        'ResNet'
    """
    if recipe.arch == "torchvision.resnet18":
        import torchvision
        return torchvision.models.resnet18(num_classes=len(CIFAR10_CLASSES))
    from resstream_assert.zoo.cifar_resnet import resnet20
    return resnet20(len(CIFAR10_CLASSES))


def _decode_split(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    images, labels, names = [], [], []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg")):
                continue
            parts = Path(member.name).parts
            cls = parts[-2]
            if cls not in CIFAR10_CLASSES:
                raise ValueError(f"{archive.name}: {member.name} is not under a CIFAR-10 class folder")
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(CIFAR10_CLASSES.index(cls))
            names.append("/".join(parts[-3:]))
    order = np.argsort(np.array(names))  # archive order is not guaranteed: sort by path
    return (np.stack(images)[order], np.array(labels, dtype=np.int64)[order],
            [names[i] for i in order])


def load_cifar10_jpeg(data_dir: Path, cache: Path) -> dict[str, np.ndarray]:
    """Both splits as uint8 ``(N, 32, 32, 3)`` arrays with labels and file names (cached).

    Example:
        >>> d = load_cifar10_jpeg(DEFAULT_DATA, Path("runs/cifar10.npz"))  # doctest: +SKIP
        >>> d["train_x"].shape
        (50000, 32, 32, 3)
    """
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    out = {}
    for split in ("train", "test"):
        t0 = time.time()
        x, y, names = _decode_split(Path(data_dir) / f"{split}.tar.gz", split)
        out[f"{split}_x"], out[f"{split}_y"], out[f"{split}_names"] = x, y, np.array(names)
        print(f"decoded {len(x)} {split} JPEGs in {time.time() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _train_batch(x_u8: torch.Tensor, recipe: NaturalRecipe, rng: np.random.Generator) -> torch.Tensor:
    # Random crop (reflect-padded) and flip at the original 32 px, then bilinear upsampling to
    # the input size, as the probe loader upsamples the 32 px test files.
    x = x_u8.permute(0, 3, 1, 2).float().div_(255)
    n, _, h, w = x.shape
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = x[flip].flip(-1)
    p = recipe.crop_pad
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    offs = rng.integers(0, 2 * p + 1, size=(n, 2))
    x = torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offs)])
    if recipe.input_size != h:
        x = F.interpolate(x, size=(recipe.input_size,) * 2, mode="bilinear", align_corners=False)
    return _normalize(x).contiguous(memory_format=torch.channels_last)


def upsample_u8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``(N, H, W, 3)`` images with PIL bilinear, exactly as the probe loader does.

    Example:
        >>> upsample_u8(np.zeros((2, 32, 32, 3), np.uint8), 64).shape
        (2, 64, 64, 3)
    """
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


@torch.no_grad()
def accuracy(model: torch.nn.Module, images_u8: np.ndarray, labels: np.ndarray, size: int,
             batch_size: int = 250) -> float:
    """Top-1 accuracy on uint8 ``(N, h, w, 3)`` images upsampled to ``size`` as the probe loader does.

    Example:
        >>> accuracy(model, d["test_x"][:100], d["test_y"][:100], 64)  # doctest: +SKIP
        0.87
    """
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch_size):
        x = torch.from_numpy(upsample_u8(images_u8[i:i + batch_size], size)).permute(0, 3, 1, 2)
        x = _normalize(x.float() / 255).contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / len(images_u8)


def _save_epoch(model: torch.nn.Module, work: Path, epoch: int) -> None:
    import safetensors.torch

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(work / f"epoch-{epoch:03d}.safetensors"),
                                metadata={"epoch": str(epoch)})


def train_natural(name: str, *, data_dir: Path = DEFAULT_DATA, work_dir: Path | None = None,
                  epochs: int | None = None, threads: int = 2, seed: int = 0,
                  test_every: int = 1) -> dict:
    """Train (or resume) one natural-image zoo model; return its history.

    The weights and card are written by ``model_zoo.train`` afterwards from the last epoch.

    Example:
        >>> train_natural("resnet18-cifar64", epochs=1, work_dir=Path("runs/smoke"))  # doctest: +SKIP
    """
    recipe = NATURAL_RECIPES[name]
    epochs = epochs or recipe.epochs
    work = Path(work_dir) if work_dir is not None else Path("runs") / name
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    data = load_cifar10_jpeg(data_dir, work.parent / "cifar10-jpeg.npz")
    tr_x, tr_y = torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"])
    n = len(tr_x)
    per_epoch = n // recipe.batch_size
    total = epochs * per_epoch

    torch.manual_seed(seed)
    model = build(recipe).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.max_lr, momentum=0.9, nesterov=True,
                          weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.max_lr, total_steps=total,
                                                pct_start=recipe.pct_start)
    history = {"recipe": asdict(recipe), "epochs": epochs, "seed": seed, "steps_per_epoch": per_epoch,
               "loss": [], "train_acc": [], "test_acc": [], "epoch_wall_s": [], "threads": threads}
    resume = work / "resume.pt"
    if resume.is_file():
        # Our own file, but still read as data only.
        state = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = json.loads(state["history"])
        print(f"[{name}] resumed after epoch {len(history['loss'])}", flush=True)
    else:
        _save_epoch(model, work, 0)
        history["test_acc"].append(round(accuracy(model, data["test_x"], data["test_y"], recipe.input_size), 4))
    start = len(history["loss"])

    for epoch in range(start + 1, epochs + 1):
        t0 = time.time()
        model.train()
        rng = np.random.default_rng(seed * 1000 + epoch)
        order = torch.from_numpy(rng.permutation(n))
        losses, correct = [], 0
        for b in range(per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            x = _train_batch(tr_x[idx], recipe, rng)
            logits = model(x)
            loss = F.cross_entropy(logits, tr_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            correct += int((logits.argmax(1) == tr_y[idx]).sum())
            if (b + 1) % 50 == 0:
                print(f"[{name}] epoch {epoch} step {b + 1}/{per_epoch} loss {np.mean(losses[-50:]):.4f} "
                      f"({time.time() - t0:.0f} s)", flush=True)
        history["loss"].append(round(float(np.mean(losses)), 4))
        history["train_acc"].append(round(correct / (per_epoch * recipe.batch_size), 4))
        model_eval = model
        test_acc = (accuracy(model_eval, data["test_x"], data["test_y"], recipe.input_size)
                    if epoch % test_every == 0 or epoch == epochs else None)
        history["test_acc"].append(round(test_acc, 4) if test_acc is not None else None)
        history["epoch_wall_s"].append(round(time.time() - t0, 1))
        _save_epoch(model, work, epoch)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "history": json.dumps(history)}, work / "resume.tmp")
        (work / "resume.tmp").replace(resume)  # atomic: an interrupted save keeps the last good one
        (work / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        print(f"[{name}] epoch {epoch}/{epochs} loss {history['loss'][-1]} train-acc "
              f"{history['train_acc'][-1]} test-acc {history['test_acc'][-1]} "
              f"({history['epoch_wall_s'][-1]:.0f} s)", flush=True)
    return history


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m model_zoo.natural")
    p.add_argument("name", choices=list(NATURAL_RECIPES))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    train_natural(a.name, data_dir=a.data, work_dir=a.work_dir, epochs=a.epochs, threads=a.threads)
