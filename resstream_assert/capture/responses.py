"""Captured responses: per image and channel, at every site of every block, for one stimulus variant.

Data only (numpy). Both capture backends (torch hooks, onnxruntime) return this type.
"""

from __future__ import annotations

import hashlib
from collections import Counter
import os
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Hashable, Mapping

import numpy as np

from resstream_assert.capture.memory import SPILL_BYTES, LazyTable, concatenate_shared, identity
from resstream_assert.errors import CacheEntryError

__all__ = ["REDUCERS", "STORAGES", "Responses", "compact", "concatenate_shared", "site_key", "checksum",
           "save_checked", "load_checked"]

#: Per-channel reductions of a feature map: the paper's center unit and the spatial mean.
REDUCERS = ("center", "mean")
#: How responses are stored: float16 halves the memory of a capture (the measures compute in float32 from
#: it, :meth:`Responses.get` upcasts); float32 keeps every bit.
STORAGES = ("float16", "float32")
#: Chunks whose largest magnitude reaches this stay float32 (float16's largest finite value is 65504).
FP16_LIMIT = 60000.0


def compact(values: np.ndarray, storage: str = "float16") -> np.ndarray:
    """``values`` as stored: float16 under ``storage="float16"`` unless a magnitude reaches :data:`FP16_LIMIT`
    (or a value is not finite: the capture's finiteness check must see it as it was), else unchanged.

    Example:
        >>> compact(np.array([1.0, 2.5], np.float32)).dtype, compact(np.array([7e4], np.float32)).dtype
        (dtype('float16'), dtype('float32'))
    """
    if storage == "float32" or values.dtype != np.float32 or values.size == 0:
        return values
    if storage != "float16":
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    peak = np.abs(values).max()
    return values.astype(np.float16) if np.isfinite(peak) and peak < FP16_LIMIT else values


def site_key(block: int, site: str) -> str:
    """The key of one (block, site) pair in :class:`Responses` arrays.

    Example:
        >>> site_key(3, "branch_out")
        '3/branch_out'
    """
    return f"{block}/{site}"


@dataclass(frozen=True)
class Responses:
    """Responses of one model to one stimulus variant (``id``, ``S``, ``Sinv``, ``zoom1.25``, ...).

    ``center[key]`` and ``mean[key]`` are ``(N, C)`` arrays, ``key = site_key(block, site)``, stored as
    float32 or float16 (:data:`STORAGES`); :meth:`get` always returns float32.
    ``center`` is the unit at ``(H//2, W//2)`` (the papers' convention), ``mean`` the spatial mean.
    ``logits`` is ``(N, K)``. ``maps`` holds whole ``(N, C, H, W)`` maps only for sites asked for.

    Example:
        >>> r = Responses("id", {"0/branch_out": np.zeros((2, 4), np.float32)}, {}, None)
        >>> r.get(0, "branch_out").shape
        (2, 4)
    """

    variant: str
    center: Mapping[str, np.ndarray]
    mean: Mapping[str, np.ndarray]
    logits: np.ndarray | None
    maps: Mapping[str, np.ndarray] = field(default_factory=dict)

    def get(self, block, site: str, reducer: str = "center") -> np.ndarray:
        """The ``(N, C)`` float32 array of one site (a float32 copy when stored as float16); ``block`` is an index
        or a :class:`Block`."""
        idx = block if isinstance(block, int) else block.index
        table = {"center": self.center, "mean": self.mean}.get(reducer)
        if table is None:
            raise ValueError(f"unknown reducer {reducer!r}; use one of {REDUCERS}")
        try:
            arr = table[site_key(idx, site)]
        except KeyError:
            raise KeyError(f"site {site!r} of block {idx} was not captured for variant {self.variant!r}; "
                           f"captured: {sorted(table)[:6]}...") from None
        return arr.astype(np.float32) if arr.dtype == np.float16 else arr

    def subset(self, rows) -> "Responses":
        """The same responses for some of the images only (``rows``: indices into the probe set), in memory.

        Example:
            >>> r = Responses("id", {"0/branch_out": np.arange(6.).reshape(3, 2)}, {}, None)
            >>> r.subset([2, 0]).get(0, "branch_out").tolist()
            [[4.0, 5.0], [0.0, 1.0]]
        """
        idx = np.asarray(rows, dtype=np.int64)
        done: dict[Hashable, np.ndarray] = {}  # sites that share one array keep sharing one

        def pick(table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = {}
            for k in table:
                ident = identity(table, k)
                if ident not in done:
                    done[ident] = table[k][idx]
                out[k] = done[ident]
            return out

        return Responses(self.variant, pick(self.center), pick(self.mean),
                         None if self.logits is None else self.logits[idx], pick(self.maps))

    @property
    def n_images(self) -> int:
        """Number of images (rows)."""
        key = next(iter(self.center), None)
        return 0 if key is None else int(self.center[key].shape[0])

    def save(self, path: str | Path, key: str = "") -> None:
        """Write to one ``.npz`` file (no pickle); a shared array is written once, the others as aliases.

        The file also holds ``key`` (the cache key it is written for) and a checksum of the key and every
        array, which :meth:`load` verifies. Arrays are read and written one at a time (a spilled capture is
        never held whole)."""
        readers: dict[str, Callable[[], np.ndarray]] = {}
        first: dict[Hashable, str] = {}
        for kind, table in (("center", self.center), ("mean", self.mean), ("maps", self.maps)):
            for k in table:
                name = f"{kind}|{k}"
                ident = identity(table, k)
                if ident in first:
                    readers[f"alias|{name}"] = partial(np.array, first[ident])
                else:
                    first[ident] = name
                    readers[name] = partial(table.__getitem__, k)
        if self.logits is not None:
            readers["logits"] = partial(np.asarray, self.logits)
        readers["variant"] = partial(np.array, self.variant)
        save_checked(path, LazyTable(readers, {n: n for n in readers}), key)

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> "Responses":
        """Read a file written by :meth:`save`; with ``key``, a :class:`CacheEntryError` unless the file was
        written for that key and its content is unchanged (:func:`load_checked`). A file over
        :data:`~resstream_assert.capture.memory.SPILL_BYTES` is read one site at a time, when asked for."""
        z = load_checked(path, key, lazy_over=SPILL_BYTES) if key is not None else _load_all(path)
        names = list(z)
        target = {n[len("alias|"):]: str(z[n]) for n in names if n.startswith("alias|")}
        target.update({n: n for n in names if "|" in n and not n.startswith("alias|")})
        tables: dict[str, Mapping[str, np.ndarray]] = {}
        shared = {t for t, n in Counter(target.values()).items() if n > 1}
        for kind in ("center", "mean", "maps"):
            mine = {name.split("|", 1)[1]: t for name, t in target.items() if name.split("|", 1)[0] == kind}
            if isinstance(z, LazyTable):
                tables[kind] = LazyTable({k: partial(z.__getitem__, t) for k, t in mine.items()}, dict(mine))
            else:
                for t in shared & set(mine.values()):
                    z[t].flags.writeable = False  # one array for several sites
                tables[kind] = {k: z[t] for k, t in mine.items()}
        return cls(str(z["variant"]), tables["center"], tables["mean"], z.get("logits"), tables["maps"])


_KEY, _SUM = "__cache_key__", "__checksum__"


def checksum(key: str, arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of a cache key and every array's name, dtype, shape and bytes (in name order).

    Example:
        >>> a = {"x": np.arange(3.0)}
        >>> checksum("k", a) == checksum("k", {"x": np.arange(3.0)}), checksum("k", a) == checksum("k2", a)
        (True, False)
    """
    h = hashlib.sha256(key.encode())
    for name in sorted(arrays):
        _digest(h, name, arrays[name])
    return h.hexdigest()


def _digest(h, name: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr)
    h.update(f"|{name}|{arr.dtype.str}|{arr.shape}|".encode())
    h.update(arr.tobytes())


def save_checked(path: str | Path, arrays: Mapping[str, np.ndarray], key: str) -> None:
    """Write ``arrays`` to one ``.npz`` file with the ``key`` they are for and their :func:`checksum`
    (atomically: a temporary file, then a rename). ``arrays`` is read one at a time, in name order, so a
    :class:`~resstream_assert.capture.memory.LazyTable` is never held whole.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "k.npz"
        >>> save_checked(path, {"x": np.arange(3.0)}, "k")
        >>> load_checked(path, "k")["x"].tolist()
        [0.0, 1.0, 2.0]
    """
    tmp = Path(str(path) + ".tmp.npz")
    h = hashlib.sha256(key.encode())
    # np.savez's layout (stored, not compressed; zip64 for large members), written member by member.
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(arrays):
            arr = np.asanyarray(arrays[name])
            _digest(h, name, arr)
            _member(zf, name, arr)
        _member(zf, _KEY, np.array(key))
        _member(zf, _SUM, np.array(h.hexdigest()))
    tmp.replace(path)


def _member(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, arr, allow_pickle=False)


def _load_all(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def _member_reader(path: str | Path, name: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        with np.load(path, allow_pickle=False) as z:
            arr = z[name]
        arr.flags.writeable = False  # one member may stand for several sites
        return arr

    return read


def load_checked(path: str | Path, key: str, lazy_over: int | None = None) -> Mapping[str, np.ndarray]:
    """The arrays of a file written by :func:`save_checked` for ``key``; :class:`CacheEntryError` when it was
    written for another key, carries no checksum, or its content no longer matches it. The check reads one
    array at a time; a file over ``lazy_over`` bytes comes back as a
    :class:`~resstream_assert.capture.memory.LazyTable` (each array read again when asked for).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "k.npz"
        >>> save_checked(path, {"x": np.arange(3.0)}, "k")
        >>> load_checked(path, "another key")
        Traceback (most recent call last):
        ...
        resstream_assert.errors.CacheEntryError: it was written for another key (k...)
    """
    lazy = lazy_over is not None and os.path.getsize(path) > lazy_over
    kept: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as z:
        if _KEY not in z.files or _SUM not in z.files:
            raise CacheEntryError("it carries no key or checksum (written by an older version, or not by "
                                  "resstream_assert)")
        stored_key, stored_sum = str(z[_KEY]), str(z[_SUM])
        if stored_key != key:
            raise CacheEntryError(f"it was written for another key ({stored_key[:12]}...)")
        h = hashlib.sha256(key.encode())
        names = sorted(n for n in z.files if n not in (_KEY, _SUM))
        for name in names:
            arr = z[name]
            _digest(h, name, arr)
            if not lazy:
                kept[name] = arr
    if h.hexdigest() != stored_sum:
        raise CacheEntryError("its content does not match its checksum (edited or damaged)")
    if lazy:
        return LazyTable({n: _member_reader(path, n) for n in names}, {n: n for n in names})
    return kept
