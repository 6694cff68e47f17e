"""Probe sets of photographs: a folder of the user's images, or a set shipped inside the package.

A folder is an ImageFolder-like tree (class subfolders, labels by sorted folder name, or by a
class-index file: :mod:`.class_index`) or a flat folder (unlabeled). Photographs of any shape are
brought to the model's square input by ``resize``: ``crop`` (shorter side to the input size, then
the centre square: torchvision's eval transforms, the default) or ``stretch`` (the whole image
squeezed to the square, aspect ratio lost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from resstream_assert.errors import ProbeError
from resstream_assert.stimuli.probe_set import ProbeSet

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image(p: Path) -> bool:
    """True for a file with an image suffix (case-insensitive).

    Example:
        >>> is_image(Path("setup.py"))
        False
    """
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


#: A probe image whose shorter side is below this fraction of the input size is refused (not upscaled
#: more than 4x: the model would see interpolation blur, not the image).
MIN_SIDE_FRACTION = 0.25


def to_rgb(im):
    """A PIL image as 8-bit RGB, converting what ``Image.convert("RGB")`` gets wrong: 16-bit and 32-bit
    integer grayscale (``I;16``, ``I``) are scaled to 8 bits instead of clipped, float images (``F``)
    in [0, 1] are scaled by 255. Palette, grayscale, CMYK and RGBA (alpha dropped, as torchvision's
    loader does) go through PIL's own conversion.

    Example:
        >>> from PIL import Image
        >>> to_rgb(Image.fromarray(np.full((2, 2), 0x8080, np.uint16))).getpixel((0, 0))
        (128, 128, 128)
    """
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(np.nanmax(a)) if a.size else 0.0
        if im.mode.startswith("I;16") or (im.mode == "I" and top > 255):
            a = a / 257.0  # 16-bit range to 8 bits (65535 -> 255)
        elif im.mode == "F" and top <= 1.0:
            a = a * 255.0
        a = np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    return im.convert("RGB")


#: How a probe image is brought to the model's square input (``--resstream-resize``); the first is the default.
RESIZE_POLICIES = ("crop", "stretch")


def _read(path: Path, size: int, root: Path, resize: str = "crop") -> np.ndarray:
    return _decode(path, path.relative_to(root).as_posix(), str(root), size, resize)


def _decode(source, rel: str, where: str, size: int, resize: str = "crop") -> np.ndarray:
    """One image (a path or a file object) as uint8 (size, size, 3): ``crop`` takes the shorter side to ``size``
    and the centre square, ``stretch`` resizes the whole image to ``size`` x ``size``."""
    from PIL import Image

    try:
        with Image.open(source) as im:
            im = to_rgb(im)
    except Exception as exc:
        raise ProbeError(f"Probe image {rel} in {where} cannot be read ({type(exc).__name__}: {exc}). Remove or "
                         "replace the file, or point the probe at another folder.") from exc
    w, h = im.size
    need = int(np.ceil(MIN_SIDE_FRACTION * size))
    if min(w, h) < need:
        raise ProbeError(f"Probe image {rel} in {where} is {w}x{h} px: too small for a {size} px input (images "
                         f"need at least {need} px on their shorter side, a quarter of the input size; upscaling "
                         f"{size / min(w, h):.0f}x would show the model interpolation blur). Remove it, use larger "
                         "images, or test at a smaller --resstream-input-size.")
    if resize == "stretch":
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    scale = size / min(w, h)
    # Shorter side to `size`, then the centre square (the usual eval preprocessing).
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _sample(items: list, n: int | None, seed: int) -> list:
    """A seeded, order-preserving subsample of ``n`` items (all of them when ``n`` is None or larger)."""
    if n is not None:
        if n < 1:
            raise ProbeError(f"The probe needs n >= 1 images, got {n}.")
        if n < len(items):
            keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:n])
            return [items[i] for i in keep]
    return items


#: Probe sets shipped inside the package, by name (``--resstream-probe NAME``): a zip of class folders.
SHIPPED = {"cifar10": "cifar10-test-1000.zip"}
SHIPPED_DIR = Path(__file__).resolve().parent / "probes"


def shipped_probe(name: str, n: int | None = None, size: int = 32, seed: int = 0, resize: str = "crop",
                  class_index: str | None = None) -> ProbeSet:
    """A probe set shipped with the package: ``cifar10`` is 1,000 CIFAR-10 test photographs (100 per
    class, the JPEG files as stored), labelled with the CIFAR-10 classes in their usual order.

    Read exactly as a folder of the same files would be (``folder_probe``): ``resize`` to
    ``size``, the same seeded subsample, the same labels.

    Example:
        >>> p = shipped_probe("cifar10", n=20, size=32)
        >>> len(p), p.class_names[:3]
        (20, ('airplane', 'automobile', 'bird'))
    """
    import io
    import zipfile

    if name not in SHIPPED:
        raise ProbeError(f"No shipped probe set named {name!r}; shipped: {', '.join(SHIPPED)} (or 'embedded', "
                         "or a folder of images).")
    path = SHIPPED_DIR / SHIPPED[name]
    with zipfile.ZipFile(path) as zf:
        members = sorted(m for m in zf.namelist() if Path(m).suffix.lower() in IMAGE_SUFFIXES)
        folders = sorted({Path(m).parts[-2] for m in members})
        labels, classes = _class_labels(folders, class_index)
        files = _sample([(m, labels[folders.index(Path(m).parts[-2])]) for m in members], n, seed)
        images = np.stack([_decode(io.BytesIO(zf.read(m)), m, path.name, size, resize) for m, _ in files])
    return ProbeSet.build(images.transpose(0, 3, 1, 2), np.array([lab for _, lab in files], np.int64),
                          [m for m, _ in files], classes)


def _class_labels(folders: Sequence[str], class_index: str | None) -> tuple[list[int], tuple[str, ...]]:
    """The label of each class folder (sorted names) and the probe's class names: the folders' sorted order,
    or the model's indices and classes from a class-index file (:mod:`.class_index`)."""
    if class_index is None:
        return list(range(len(folders))), tuple(folders)
    from resstream_assert.stimuli.class_index import map_folders, read_class_index

    ids = read_class_index(class_index)
    return map_folders(folders, ids, Path(str(class_index)).name), ids


def folder_probe(path, n: int | None = None, size: int = 224, seed: int = 0, resize: str = "crop",
                 class_index: str | None = None) -> ProbeSet:
    """Load a folder of images: class subfolders (labels by sorted name) or a flat folder.

    Images are brought to ``size`` x ``size`` by ``resize`` (``crop``: shorter side to ``size``, centre
    square; ``stretch``: the whole image); with ``n`` a seeded, order-preserving subsample of ``n`` files is
    taken. Loose top-level files in a class tree are kept as unlabeled (-1). With ``class_index`` (a JSON
    file ``{"0": ["n01440764", "tench"], ...}``) each class folder is labelled with the model's index of its
    name, and the probe's class names are the file's classes in index order.

    Example:
        >>> probe = folder_probe("my_images/", n=256, size=224)  # doctest: +SKIP
    """
    root = Path(path)
    if not root.exists():
        raise ProbeError(f"Probe folder {root} does not exist. Point the probe at a folder of images "
                         "(class subfolders or a flat folder), or use the embedded probe.")
    if not root.is_dir():
        raise ProbeError(f"Probe path {root} is a file, not a folder. Point it at a folder of images.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and any(is_image(f) for f in d.rglob("*")))
    labels, classes = _class_labels([d.name for d in class_dirs], class_index)
    files: list[tuple[Path, int]] = [(f, -1) for f in sorted(root.iterdir()) if is_image(f)]
    for label, d in zip(labels, class_dirs):
        files += [(f, label) for f in sorted(d.rglob("*")) if is_image(f)]
    if not files:
        raise ProbeError(f"Probe folder {root} contains no images (looked for {', '.join(IMAGE_SUFFIXES)}, "
                         "directly or one class subfolder down). Add images or point at another folder.")
    files = _sample(files, n, seed)
    images = np.stack([_read(f, size, root, resize) for f, _ in files]).transpose(0, 3, 1, 2)
    names = [f.relative_to(root).as_posix() for f, _ in files]
    return ProbeSet.build(images, np.array([lab for _, lab in files], np.int64), names, classes)
