"""Probe sets: the images every measure is computed on.

Two sources behind one type (DESIGN.md decision 5):

- ``embedded_probe``: needs no data at all. The synthetic generator's *test* split
  (labeled, objects at 20%-70% of the side) plus an unlabeled slice of natural photographs
  bundled with scikit-image, cropped at seeded positions and scales.
- ``folder_probe``: the user's images, an ImageFolder-like tree (class subfolders, labels
  by sorted folder name, or by a class-index file: :mod:`.class_index`) or a flat folder (unlabeled).

Photographs of any shape are brought to the model's square input by ``resize``: ``crop``
(shorter side to the input size, then the centre square: torchvision's eval transforms, the
default) or ``stretch`` (the whole image squeezed to the square, aspect ratio lost).

A ``ProbeSet`` carries a SHA-256 ``digest`` of its pixels and labels, used as a cache key.

A large embedded probe (over :data:`IN_MEMORY_LIMIT` bytes of pixels, e.g. 10,000 images at 224 px
= 1.5 GB) is rendered once into a raw file under the cache directory and read through a memory map
whose pages are handed back after each batch: it streams, and never sits whole in the process's memory.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from resstream_assert.errors import ProbeError
from resstream_assert.stimuli.synthetic import CLASS_NAMES, render

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Photographs shipped inside scikit-image (no download needed).
NATURAL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry",
                  "hubble_deep_field", "retina", "coins", "moon", "brick", "grass", "gravel")


#: Pixels beyond this many bytes are kept on disk (a memory-mapped file) instead of in memory.
IN_MEMORY_LIMIT = 256 * 2**20


def _mapping(arr: np.ndarray) -> "mmap.mmap | None":
    """The memory map behind ``arr`` (a view of an offset-0 ``np.memmap``), or None for an in-memory array."""
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def release(arr: np.ndarray) -> None:
    """Hand the pages of a memory-mapped ``arr`` back to the OS (they stay in the file's page cache); a no-op for
    an in-memory array. Called after each batch, so a streamed probe never becomes resident as a whole."""
    mm = _mapping(arr)
    if mm is None or arr.size == 0:
        return
    root = arr
    while not isinstance(getattr(root, "base", None), mmap.mmap):
        root = root.base
    start = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    lo = start - start % mmap.PAGESIZE
    length = start + arr.nbytes - lo
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, min(length, len(mm) - lo))
    except (AttributeError, OSError, ValueError):  # no madvise on this platform: the pages stay, nothing breaks
        pass


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{images.shape}|{images.dtype}|{labels.dtype}".encode())
    for i in range(0, len(images), 256):  # chunks: a memory-mapped probe is hashed without becoming resident
        chunk = images[i:i + 256]
        h.update(np.ascontiguousarray(chunk).tobytes())
        release(chunk)
    h.update(np.ascontiguousarray(labels.astype("<i8")).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ProbeSet:
    """Images ``(N, 3, H, W)`` uint8 with labels (-1 = unlabeled) and provenance names.

    Example:
        >>> probe = embedded_probe(n=16, size=32)
        >>> len(probe), probe.size, len(probe.labeled())
        (16, 32, 14)
    """

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    class_names: tuple[str, ...]
    digest: str

    @classmethod
    def build(cls, images: np.ndarray, labels: np.ndarray, names: Sequence[str],
              class_names: Sequence[str]) -> "ProbeSet":
        """Make a probe set from arrays, computing its digest.

        Example:
            >>> ProbeSet.build(np.zeros((1, 3, 8, 8), np.uint8), np.array([-1]), ["x"], ()).size
            8
        """
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or images.shape[1] != 3 or not len(labels) == len(images) == len(names):
            raise ProbeError(f"Probe arrays do not fit: images {images.shape} (need N, 3, H, W), "
                             f"{len(labels)} labels, {len(names)} names.")
        return cls(images, labels, tuple(names), tuple(class_names), _digest(images, labels))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Image height in pixels (probe images are square)."""
        return int(self.images.shape[2])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield float32 batches ``(B, 3, H, W)`` in [0, 1], in order.

        Example:
            >>> [b.shape[0] for b in embedded_probe(n=10, size=32).batches(4)]
            [4, 4, 2]
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for i in range(0, len(self), batch_size):
            batch = self.images[i:i + batch_size].astype(np.float32) / np.float32(255)
            release(self.images[i:i + batch_size])
            yield batch

    def subset(self, idx) -> "ProbeSet":
        """The probe set restricted to ``idx`` (indices or a boolean mask), same order as given.

        Example:
            >>> len(embedded_probe(n=10, size=32).subset([0, 2]))
            2
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return ProbeSet.build(self.images[idx], self.labels[idx], [self.names[i] for i in idx],
                              self.class_names)

    def labeled(self) -> "ProbeSet":
        """The images with a label (>= 0).

        Example:
            >>> bool((embedded_probe(n=16, size=32).labeled().labels >= 0).all())
            True
        """
        return self.subset(self.labels >= 0)


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray | None:
    import skimage.data

    try:
        img = getattr(skimage.data, name)()
    except Exception:  # a missing optional photo only shrinks the natural pool
        return None
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _natural_names() -> list[str]:
    names = [p for p in NATURAL_IMAGES if _photo(p) is not None]
    if not names:
        raise ProbeError("No scikit-image photograph could be loaded for the natural part of the "
                         "embedded probe. Reinstall scikit-image, or pass natural_fraction=0.")
    return names


def _natural_crop(i: int, names: list[str], size: int, seed: int) -> tuple[np.ndarray, str]:
    """The ``i``-th natural crop (HWC uint8) and its name: a seeded position and scale of one photo."""
    from PIL import Image

    name = names[i % len(names)]
    photo = _photo(name)
    k = i // len(names)
    digest = hashlib.sha256(f"resstream-natural/{seed}/{name}/{k}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    h, w = photo.shape[:2]
    side = int(round(min(h, w) * rng.uniform(0.3, 1.0)))  # several scales of the same photo
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    # PIL's bilinear resize filters over the whole footprint when shrinking (antialiased).
    return np.asarray(crop.resize((size, size), Image.BILINEAR)), f"skimage/{name}/crop{k}"


def _fill(images: np.ndarray, n_syn: int, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Render every image into ``images`` (N, 3, H, W) one at a time; the labels and names."""
    n = len(images)
    labels = np.full(n, -1, np.int64)
    names = [f"synth/test/{i}" for i in range(n_syn)]
    for i in range(n_syn):
        img, labels[i], _ = render(i, "test", size, seed)
        images[i] = img.transpose(2, 0, 1)
        if i % 256 == 255:
            release(images[i - 255:i + 1])
    photos = _natural_names() if n > n_syn else []
    for j in range(n - n_syn):
        crop, name = _natural_crop(j, photos, size, seed)
        images[n_syn + j] = crop.transpose(2, 0, 1)
        names.append(name)
        if j % 256 == 255:
            release(images[n_syn + j - 255:n_syn + j + 1])
    return labels, names


def _on_disk(n: int, size: int, seed: int, n_syn: int, directory: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """The embedded probe as a read-only memory map of a raw uint8 file under ``directory`` (rendered once)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"embedded-v1-{n}x3x{size}x{size}-seed{seed}-synth{n_syn}.u8"
    shape = (n, 3, size, size)
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        out = np.memmap(tmp, np.uint8, "w+", shape=shape)
        _fill(out, n_syn, size, seed)
        out.flush()
        del out
        os.replace(tmp, path)
    labels = np.where(np.arange(n) < n_syn, np.arange(n) % len(CLASS_NAMES), -1).astype(np.int64)
    photos = _natural_names() if n > n_syn else []
    names = [f"synth/test/{i}" for i in range(n_syn)] + [
        f"skimage/{photos[j % len(photos)]}/crop{j // len(photos)}" for j in range(n - n_syn)]
    return np.memmap(path, np.uint8, "r", shape=shape), labels, names


def embedded_probe(n: int = 512, size: int = 96, seed: int = 0,
                   natural_fraction: float = 0.125, disk: str | Path | None = None) -> ProbeSet:
    """The built-in probe: synthetic test images (labeled) + natural photo crops (label -1).

    ``disk``: a directory to keep the pixels in (a raw file, rendered once, memory-mapped and streamed);
    ``None`` keeps them in memory.

    Example:
        >>> p = embedded_probe(n=64, size=32)
        >>> p.images.shape, int((p.labels == -1).sum())
        ((64, 3, 32, 32), 8)
    """
    if n < 1:
        raise ProbeError(f"The embedded probe needs n >= 1 images, got {n}.")
    if not 0.0 <= natural_fraction <= 1.0:
        raise ProbeError(f"natural_fraction must be in [0, 1], got {natural_fraction}.")
    n_syn = n - int(round(n * natural_fraction))
    if disk is not None:
        images, labels, names = _on_disk(n, size, seed, n_syn, Path(disk))
        return ProbeSet.build(images, labels, names, CLASS_NAMES)
    # Written image by image into the final (N, 3, H, W) array: no full-size temporary copies.
    images = np.empty((n, 3, size, size), np.uint8)
    labels, names = _fill(images, n_syn, size, seed)
    return ProbeSet.build(images, labels, names, CLASS_NAMES)


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
        return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    scale = size / min(w, h)
    # Shorter side to `size`, then the centre square (the usual eval preprocessing).
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
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


def load_probe(source: str | None, n: int, size: int, seed: int = 0, resize: str = "crop",
               class_index: str | None = None) -> ProbeSet:
    """``None`` or ``"embedded"`` gives the embedded probe, a name in :data:`SHIPPED` that shipped
    set; anything else is a folder path. ``resize`` and ``class_index`` apply to photographs (a shipped set
    or a folder; the embedded images are drawn square at ``size``).

    Example:
        >>> len(load_probe(None, n=16, size=32)), len(load_probe("cifar10", n=16, size=32, resize="stretch"))
        (16, 16)
    """
    if resize not in RESIZE_POLICIES:
        raise ProbeError(f"resize {resize!r}: use one of {', '.join(RESIZE_POLICIES)}")
    if source is None or str(source) == "embedded":
        if n * 3 * size * size > IN_MEMORY_LIMIT:  # e.g. 10,000 images at 224 px: streamed from disk
            from resstream_assert.cache_dir import default_cache_dir

            return embedded_probe(n=n, size=size, seed=seed, disk=default_cache_dir() / "probes")
        return embedded_probe(n=n, size=size, seed=seed)
    if str(source) in SHIPPED:
        return shipped_probe(str(source), n=n, size=size, seed=seed, resize=resize, class_index=class_index)
    return folder_probe(source, n=n, size=size, seed=seed, resize=resize, class_index=class_index)
