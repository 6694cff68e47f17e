"""Captured responses: per image and channel, at every site of every block, for one stimulus variant.

Data only (numpy). Both capture backends (torch hooks, onnxruntime) return this type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from resstream_assert.errors import CacheEntryError

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


def concatenate_shared(chunks_by_key: dict, concat) -> dict:
    """``{key: concat(chunks)}``, concatenating each distinct list of chunk objects once.

    Sites that are one tensor (a block's ``resid_pre`` is the previous block's ``resid_post``,
    an identity shortcut's ``skip_out`` is its ``resid_pre``) are tapped once and their chunk
    lists hold the same objects; their keys then share one read-only array, which saves about
    a third of the memory of a capture.

    Example:
        >>> a = [np.ones(2)]
        >>> out = concatenate_shared({"x": a, "y": list(a)}, np.concatenate)
        >>> out["x"] is out["y"], out["x"].flags.writeable
        (True, False)
    """
    done: dict[tuple, np.ndarray] = {}
    out = {}
    for key, chunks in chunks_by_key.items():
        ident = tuple(id(c) for c in chunks)
        if ident in done:
            done[ident].flags.writeable = False
            out[key] = done[ident]
        else:
            out[key] = done[ident] = np.asarray(concat(chunks))
        # Emptied as soon as it is joined (the caller's lists are these): a chunk is freed once every key that
        # holds it is done, so the capture never holds its responses twice.
        if isinstance(chunks, list):
            chunks.clear()
    return out


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
    center: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    logits: np.ndarray | None
    maps: dict[str, np.ndarray] = field(default_factory=dict)

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
        """The same responses for some of the images only (``rows``: indices into the probe set).

        Example:
            >>> r = Responses("id", {"0/branch_out": np.arange(6.).reshape(3, 2)}, {}, None)
            >>> r.subset([2, 0]).get(0, "branch_out").tolist()
            [[4.0, 5.0], [0.0, 1.0]]
        """
        idx = np.asarray(rows, dtype=np.int64)
        done: dict[int, np.ndarray] = {}  # sites that share one array keep sharing one

        def pick(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: done[id(v)] if id(v) in done else done.setdefault(id(v), v[idx]) for k, v in table.items()}

        return Responses(self.variant, pick(self.center), pick(self.mean),
                         None if self.logits is None else self.logits[idx], pick(self.maps))

    @property
    def n_images(self) -> int:
        """Number of images (rows)."""
        arr = next(iter(self.center.values()), None)
        return 0 if arr is None else int(arr.shape[0])

    def save(self, path: str | Path, key: str = "") -> None:
        """Write to one ``.npz`` file (no pickle); a shared array is written once, the others as aliases.

        The file also holds ``key`` (the cache key it is written for) and a checksum of the key and every
        array, which :meth:`load` verifies."""
        arrays: dict[str, np.ndarray] = {}
        first: dict[int, str] = {}
        for kind, table in (("center", self.center), ("mean", self.mean), ("maps", self.maps)):
            for k, v in table.items():
                name = f"{kind}|{k}"
                if id(v) in first:
                    arrays[f"alias|{name}"] = np.array(first[id(v)])
                else:
                    first[id(v)] = name
                    arrays[name] = v
        if self.logits is not None:
            arrays["logits"] = self.logits
        arrays["variant"] = np.array(self.variant)
        save_checked(path, arrays, key)

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> "Responses":
        """Read a file written by :meth:`save`; with ``key``, a :class:`CacheEntryError` unless the file was
        written for that key and its content is unchanged (:func:`load_checked`)."""
        z = load_checked(path, key) if key is not None else _load_all(path)
        parts: dict[str, dict[str, np.ndarray]] = {"center": {}, "mean": {}, "maps": {}}
        loaded = {name: arr for name, arr in z.items() if "|" in name and not name.startswith("alias|")}
        for name, arr in z.items():
            if name.startswith("alias|"):
                loaded[name[len("alias|"):]] = loaded[str(arr)]
                loaded[str(arr)].flags.writeable = False
        for name, arr in loaded.items():
            kind, site = name.split("|", 1)
            parts[kind][site] = arr
        return cls(str(z["variant"]), parts["center"], parts["mean"], z.get("logits"), parts["maps"])


_KEY, _SUM = "__cache_key__", "__checksum__"


def checksum(key: str, arrays: dict[str, np.ndarray]) -> str:
    """sha256 of a cache key and every array's name, dtype, shape and bytes (in name order).

    Example:
        >>> a = {"x": np.arange(3.0)}
        >>> checksum("k", a) == checksum("k", {"x": np.arange(3.0)}), checksum("k", a) == checksum("k2", a)
        (True, False)
    """
    h = hashlib.sha256(key.encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def save_checked(path: str | Path, arrays: dict[str, np.ndarray], key: str) -> None:
    """Write ``arrays`` to one ``.npz`` file with the ``key`` they are for and their :func:`checksum`
    (atomically: a temporary file, then a rename).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "k.npz"
        >>> save_checked(path, {"x": np.arange(3.0)}, "k")
        >>> load_checked(path, "k")["x"].tolist()
        [0.0, 1.0, 2.0]
    """
    tmp = Path(str(path) + ".tmp.npz")
    # Typed loosely: the arrays' names are keywords, which mypy would match against savez's bool options.
    savez: Callable[..., None] = np.savez
    savez(tmp, **arrays, **{_KEY: np.array(key), _SUM: np.array(checksum(key, arrays))})
    tmp.replace(path)


def _load_all(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def load_checked(path: str | Path, key: str) -> dict[str, np.ndarray]:
    """The arrays of a file written by :func:`save_checked` for ``key``; :class:`CacheEntryError` when it was
    written for another key, carries no checksum, or its content no longer matches it.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "k.npz"
        >>> save_checked(path, {"x": np.arange(3.0)}, "k")
        >>> load_checked(path, "another key")
        Traceback (most recent call last):
        ...
        resstream_assert.errors.CacheEntryError: it was written for another key (k...)
    """
    z = _load_all(path)
    stored_key, stored_sum = (str(z.pop(_KEY)) if _KEY in z else None), (str(z.pop(_SUM)) if _SUM in z else None)
    if stored_key is None or stored_sum is None:
        raise CacheEntryError("it carries no key or checksum (written by an older version, or not by "
                              "resstream_assert)")
    if stored_key != key:
        raise CacheEntryError(f"it was written for another key ({stored_key[:12]}...)")
    if checksum(key, z) != stored_sum:
        raise CacheEntryError("its content does not match its checksum (edited or damaged)")
    return z
