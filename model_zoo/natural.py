"""Train a zoo model on natural images: the CIFAR-10 JPEG copy in ``shared/data/cifar10-jpeg``.

Usage::

    python -m model_zoo.train resnet18-cifar64 [--data DIR] [--work-dir DIR] [--epochs E] [--threads T]
    python -m model_zoo.natural --make-probe      # the shipped probe set (1,000 test photographs)

Nothing here runs for a user: the data is read once (both archives decoded into memory and
cached as one ``.npz`` beside the work folder); what ships is the weights, the card and the probe.

Training is resumable. The work folder (default ``runs/NAME``, outside the package and
ignored by git) gets, after every epoch ``e``:

- ``epoch-EEE.safetensors``: the fp32 weights at the end of epoch ``e`` (``epoch-000`` is the
  seeded initialisation), for ``resstream trend`` (claims over training);
- ``resume.pt``: weights, optimizer and scheduler state and the history so far; a rerun of
  the same command continues from it, and once every epoch is done it only writes the card.

The data order of epoch ``e`` is drawn from ``seed * 1000 + e``, so a resumed run sees the same
batches as an uninterrupted one. The architecture, input size and normalisation are the zoo's
recipe (:mod:`resstream_assert.zoo`); this module holds how it is trained, and
:mod:`model_zoo.natural_card` what ships of it (the stored weights and the card).
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

from resstream_assert import zoo

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-jpeg"
TABLE_ZOOMS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 2.0)
CONTROL_VARIANTS = ("Sinv", "flip", "shift")


@dataclass(frozen=True)
class NaturalRecipe:
    """How one natural-image zoo model is trained (sized for ~1.5 h on 2 idle CPU cores)."""

    epochs: int = 20
    batch_size: int = 128
    max_lr: float = 0.15
    weight_decay: float = 5e-4
    pct_start: float = 0.25
    crop_pad: int = 4  # random-crop padding in pixels of the 32 px original


NATURAL_RECIPES = {"resnet18-cifar64": NaturalRecipe(),
                   # another family at the CIFAR size: 0.27 M parameters, so 15 epochs fit well under an hour
                   "cifar-resnet20-cifar32": NaturalRecipe(epochs=15, max_lr=0.2)}


def _decode_split(archive: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    images, labels, names = [], [], []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg")):
                continue
            parts = Path(member.name).parts
            if parts[-2] not in CIFAR10_CLASSES:
                raise ValueError(f"{archive.name}: {member.name} is not under a CIFAR-10 class folder")
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(CIFAR10_CLASSES.index(parts[-2]))
            names.append("/".join(parts[-3:]))
    order = np.argsort(np.array(names))  # archive order is not guaranteed: sort by path
    return np.stack(images)[order], np.array(labels, dtype=np.int64)[order], [names[i] for i in order]


def load_cifar10_jpeg(data_dir: Path, cache: Path) -> dict[str, np.ndarray]:
    """Both splits as uint8 ``(N, 32, 32, 3)`` arrays with labels and file names (cached in ``cache``).

    Example:
        >>> d = load_cifar10_jpeg(DEFAULT_DATA, Path("runs/cifar10-jpeg.npz"))  # doctest: +SKIP
        >>> d["train_x"].shape
        (50000, 32, 32, 3)
    """
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    out = {}
    for split in ("train", "test"):
        t0 = time.time()
        x, y, names = _decode_split(Path(data_dir) / f"{split}.tar.gz")
        out[f"{split}_x"], out[f"{split}_y"], out[f"{split}_names"] = x, y, np.array(names)
        print(f"decoded {len(x)} {split} JPEGs in {time.time() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _normalize(x: torch.Tensor, entry: zoo.ZooEntry) -> torch.Tensor:
    return (x - torch.tensor(entry.mean).view(1, 3, 1, 1)) / torch.tensor(entry.std).view(1, 3, 1, 1)


def _train_batch(x_u8: torch.Tensor, entry: zoo.ZooEntry, recipe: NaturalRecipe,
                 rng: np.random.Generator) -> torch.Tensor:
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
    if entry.input_size != h:
        x = F.interpolate(x, size=(entry.input_size,) * 2, mode="bilinear", align_corners=False)
    return _normalize(x, entry).contiguous(memory_format=torch.channels_last)


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
def accuracy(model: torch.nn.Module, images_u8: np.ndarray, labels: np.ndarray, entry: zoo.ZooEntry,
             batch_size: int = 250) -> float:
    """Top-1 accuracy on uint8 ``(N, h, w, 3)`` images upsampled to the model's size as the probe loader does.

    Example:
        >>> accuracy(model, d["test_x"][:100], d["test_y"][:100], zoo.get("resnet18-cifar64"))  # doctest: +SKIP
        0.87
    """
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch_size):
        x = torch.from_numpy(upsample_u8(images_u8[i:i + batch_size], entry.input_size)).permute(0, 3, 1, 2)
        x = _normalize(x.float() / 255, entry).contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / len(images_u8)


def _save_epoch(model: torch.nn.Module, work: Path, epoch: int) -> None:
    import safetensors.torch

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(work / f"epoch-{epoch:03d}.safetensors"),
                                metadata={"epoch": str(epoch)})


def _one_epoch(model, opt, sched, tr_x, tr_y, entry, recipe, rng, name, epoch) -> tuple[float, float]:
    model.train()
    n, bs = len(tr_x), recipe.batch_size
    order = torch.from_numpy(rng.permutation(n))
    losses, correct, t0 = [], 0, time.time()
    for b in range(n // bs):
        idx = order[b * bs:(b + 1) * bs]
        logits = model(_train_batch(tr_x[idx], entry, recipe, rng))
        loss = F.cross_entropy(logits, tr_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        correct += int((logits.argmax(1) == tr_y[idx]).sum())
        if (b + 1) % 50 == 0:
            print(f"[{name}] epoch {epoch} step {b + 1}/{n // bs} loss {np.mean(losses[-50:]):.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return float(np.mean(losses)), correct / ((n // bs) * bs)


def train_natural(name: str, *, data_dir: Path = DEFAULT_DATA, work_dir: Path | None = None,
                  epochs: int | None = None, threads: int = 2, seed: int = 0) -> dict:
    """Train (or resume) one natural-image zoo model in ``work_dir``; return its history.

    Example:
        >>> train_natural("resnet18-cifar64", epochs=1, work_dir=Path("runs/smoke"))  # doctest: +SKIP
    """
    recipe, entry = NATURAL_RECIPES[name], zoo.get(name)
    epochs = epochs or recipe.epochs
    work = Path(work_dir) if work_dir is not None else Path("runs") / name
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    data = load_cifar10_jpeg(data_dir, work.parent / "cifar10-jpeg.npz")
    tr_x, tr_y = torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"])
    total = epochs * (len(tr_x) // recipe.batch_size)

    torch.manual_seed(seed)
    model = entry.build().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.max_lr, momentum=0.9, nesterov=True,
                          weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.max_lr, total_steps=total,
                                                pct_start=recipe.pct_start)
    history = {"recipe": asdict(recipe), "epochs": epochs, "seed": seed, "steps_per_epoch": total // epochs,
               "loss": [], "train_acc": [], "test_acc": [], "epoch_wall_s": [], "threads": threads}
    resume = work / "resume.pt"
    if resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=True)  # our own file, still read as data
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = json.loads(state["history"])
        print(f"[{name}] resumed after epoch {len(history['loss'])}", flush=True)
    else:
        _save_epoch(model, work, 0)
        history["test_acc"].append(round(accuracy(model, data["test_x"], data["test_y"], entry), 4))

    for epoch in range(len(history["loss"]) + 1, epochs + 1):
        t0 = time.time()
        loss, train_acc = _one_epoch(model, opt, sched, tr_x, tr_y, entry, recipe,
                                     np.random.default_rng(seed * 1000 + epoch), name, epoch)
        history["loss"].append(round(loss, 4))
        history["train_acc"].append(round(train_acc, 4))
        history["test_acc"].append(round(accuracy(model, data["test_x"], data["test_y"], entry), 4))
        history["epoch_wall_s"].append(round(time.time() - t0, 1))
        _save_epoch(model, work, epoch)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "history": json.dumps(history)}, work / "resume.tmp")
        (work / "resume.tmp").replace(resume)  # atomic: an interrupted save keeps the last good one
        (work / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        print(f"[{name}] epoch {epoch}/{epochs} loss {loss:.4f} train-acc {train_acc:.4f} "
              f"test-acc {history['test_acc'][-1]} ({history['epoch_wall_s'][-1]:.0f} s)", flush=True)
    return history


def make_probe(data_dir: Path = DEFAULT_DATA, per_class: int = 100) -> Path:
    """Write the shipped natural probe set: the first ``per_class`` test files (sorted names) of each
    class, the JPEG bytes as stored, into ``resstream_assert/stimuli/probes/cifar10-test-1000.zip``.

    Example:
        >>> make_probe()  # doctest: +SKIP
    """
    import zipfile

    from resstream_assert.stimuli.probe import SHIPPED, SHIPPED_DIR

    chosen: dict[str, list[tuple[str, bytes]]] = {c: [] for c in CIFAR10_CLASSES}
    with tarfile.open(Path(data_dir) / "test.tar.gz", "r:gz") as tar:
        members = sorted((m for m in tar if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg"))),
                         key=lambda m: m.name)
        for m in members:
            cls = Path(m.name).parts[-2]
            if len(chosen[cls]) < per_class:
                chosen[cls].append((Path(m.name).name, tar.extractfile(m).read()))
    out = SHIPPED_DIR / SHIPPED["cifar10"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for cls in CIFAR10_CLASSES:
            for fname, data in chosen[cls]:
                info = zipfile.ZipInfo(f"cifar10/{cls}/{fname}", date_time=(2026, 1, 1, 0, 0, 0))
                zf.writestr(info, data)  # fixed timestamps: the same bytes on every rebuild
    return out
