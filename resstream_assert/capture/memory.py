"""A large capture's memory kept flat: reductions spilled to disk batch by batch, freed heap handed back.

Two things made a large capture's peak grow (resnet50 at 224 px, measured in docs/speed.md):

- **The responses themselves.** 10,000 images keep about 1 GB of centre units even in float16. Once the
  first batch shows that a capture would keep more than ``limit`` bytes, :class:`Spill` appends every
  batch's reductions to one raw file per distinct array and the capture returns a :class:`LazyTable`
  that reads one site at a time from its file (no memory map: pages read through a map stay in the
  process's resident set for as long as the map lives).
- **glibc's heap.** Its mmap threshold adapts upwards once a large tensor is freed, after which the
  forward pass's large intermediates come from the heap, whose freed holes are not returned: at batch 8
  the peak grew by 0.6 GB over a plain forward. :func:`release_when_grown` after each batch hands them
  back (``malloc_trim``, once the resident set has grown by 128 MiB since the last time; a no-op without
  glibc). Fixing the threshold instead costs 70% of the forward's
  speed (every large tensor page-faults afresh).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Callable, Hashable, Iterator, Mapping

import numpy as np

from resstream_assert.errors import CaptureError

#: A capture whose reductions would pass this many bytes spills them to disk (the probe set's own rule).
SPILL_BYTES = 256 * 2**20


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Example:
        >>> release_free_memory()
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


#: :func:`release_when_grown` trims once the resident set has grown this much since its last trim.
TRIM_GROWTH = 128 * 2**20
_after_trim = 0


def release_when_grown(growth: int = TRIM_GROWTH) -> None:
    """:func:`release_free_memory` once the resident set has grown by ``growth`` bytes since the last trim.

    Trimming after every batch cost a small model's capture about 15% (the next forward page-faults the
    returned pages back in); a heap that has not grown has nothing worth handing back.

    Example:
        >>> release_when_grown()
    """
    global _after_trim
    now = _resident_bytes()
    if now is None or now - _after_trim > growth:
        release_free_memory()
        _after_trim = _resident_bytes() or 0


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:  # Linux: pages (size, resident, ...)
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _malloc_trim() -> Callable[[int], int] | None:
    global _TRIM
    if _TRIM is False:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
            _TRIM = None
    return _TRIM  # type: ignore[return-value]


_TRIM: object = False


class LazyTable(Mapping[str, np.ndarray]):
    """A read-only ``{key: (N, C) array}`` whose arrays are read when asked for, each time afresh.

    ``readers`` maps each key to a function returning its array; keys that are one array (a block's
    ``resid_pre`` is the previous block's ``resid_post``) share a ``source``, so writers and subsets keep
    them shared. ``keep`` holds whatever must live as long as the table (the spill folder's remover).

    Example:
        >>> t = LazyTable({"0/a": lambda: np.zeros((2, 3))}, {"0/a": "f"})
        >>> t["0/a"].shape, t.source("0/a")
        ((2, 3), 'f')
    """

    def __init__(self, readers: dict[str, Callable[[], np.ndarray]], sources: dict[str, str], keep: object = None):
        self._readers, self._sources, self._keep = readers, sources, keep

    def __getitem__(self, key: str) -> np.ndarray:
        return self._readers[key]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __len__(self) -> int:
        return len(self._readers)

    def source(self, key: str) -> str:
        """What the array of ``key`` is read from: equal for keys that are one array."""
        return self._sources[key]

    def __repr__(self) -> str:
        return f"LazyTable({len(self)} keys from {len(set(self._sources.values()))} arrays)"


def identity(table: Mapping[str, np.ndarray], key: str) -> Hashable:
    """What tells whether two keys of ``table`` are one array (without reading a lazy table's array).

    Example:
        >>> a = np.zeros(2)
        >>> identity({"x": a, "y": a}, "x") == identity({"x": a, "y": a}, "y")
        True
    """
    return ("file", table.source(key)) if isinstance(table, LazyTable) else id(table[key])


class Spill:
    """Moves a capture's per-batch reductions to disk once they would pass ``limit`` bytes in all.

    The backends append each batch's chunks to lists (``store[kind][key]``, the same chunk object under
    keys that are one tensor) and call :meth:`after_batch`; :meth:`join` then gives each kind's arrays,
    joined in memory (a small capture) or as a :class:`LazyTable` over the files (in ``directory``, else
    the system's temporary folder; removed when the last table reading it is gone). ``limit=None``
    never spills.

    Example:
        >>> s = Spill(total=4, limit=8)
        >>> store = {"center": {"0/a": [np.ones((2, 3), np.float32)]}}
        >>> s.after_batch(store, 2); s.active, store["center"]["0/a"]
        (True, [])
        >>> store["center"]["0/a"].append(np.zeros((2, 3), np.float32))
        >>> table = s.join("center", store["center"], np.concatenate)
        >>> table["0/a"].shape, float(table["0/a"].sum())
        ((4, 3), 6.0)
    """

    def __init__(self, total: int, limit: int | None = SPILL_BYTES, directory: str | Path | None = None):
        self.total, self.limit, self.directory = total, limit, directory
        self.active = False
        self._decided = limit is None
        self._folder: Path | None = None
        self._owner: _Folder | None = None
        self._files: dict[tuple[str, str], Path] = {}  # each (kind, key)'s file
        self._first_ids: dict[tuple[str, str], tuple[int, ...]] = {}  # the chunks a file began with
        self._dtypes: dict[Path, np.dtype] = {}
        self._width: dict[Path, int] = {}

    def after_batch(self, store: Mapping[str, Mapping[str, list]], rows: int) -> None:
        """Decide on the first batch whether to spill (its bytes times the batches to come); once spilling,
        write and empty every list of ``store`` (``{kind: {key: [chunk, ...]}}``)."""
        if not self._decided:
            per_row = sum(_array(c).nbytes for table in store.values() for c in _distinct(table)) / max(rows, 1)
            self.active = self.limit is not None and per_row * self.total > self.limit
            self._decided = True
        if self.active:
            for kind, table in store.items():
                self._write(kind, table)

    def join(self, kind: str, chunks: dict[str, list], concat: Callable[[list], np.ndarray]
             ) -> Mapping[str, np.ndarray]:
        """One kind's arrays: joined in memory (``concat``), or read lazily from the spill files."""
        if not self.active:
            return concatenate_shared(chunks, concat)
        self._write(kind, chunks)
        files = {key: self._files[(kind, key)] for key in chunks}
        readers = {key: self._reader(path) for key, path in files.items()}
        return LazyTable(readers, {key: path.name for key, path in files.items()}, keep=self._owner)

    def _reader(self, path: Path) -> Callable[[], np.ndarray]:
        dtype, width = self._dtypes[path], self._width[path]

        def read() -> np.ndarray:
            arr = np.fromfile(path, dtype).reshape(-1, width)
            arr.flags.writeable = False  # one file may stand for several sites: nobody edits it in place
            return arr

        return read

    def _write(self, kind: str, chunks: Mapping[str, list]) -> None:
        try:
            self._write_all(kind, chunks)
        except OSError as exc:  # a full disk, a folder that cannot be made: say where, and what to do
            where = self._folder or self.directory or tempfile.gettempdir()
            raise CaptureError(f"the capture's responses could not be written to {str(where)!r} ({exc}); they go to "
                               "disk once they would pass "
                               f"{(self.limit or 0) / 2**20:.0f} MiB. Free space there, or give another folder "
                               "(--resstream-cache-dir, or CaptureSettings(spill_dir=...)).") from exc

    def _write_all(self, kind: str, chunks: Mapping[str, list]) -> None:
        written: set[int] = set()
        for key, items in chunks.items():
            path = self._files.get((kind, key)) or self._new_file((kind, key), items)
            for c in items:
                if id(c) in written:
                    continue
                written.add(id(c))
                self._append(path, _array(c))
            if isinstance(items, list):
                items.clear()

    def _new_file(self, key: tuple[str, str], items: list) -> Path:
        # A key whose chunks were already written under another key is that key's array (one tensor, two sites).
        ids = tuple(id(c) for c in items)
        for other, path in self._files.items():
            if other[0] == key[0] and self._first_ids.get(other) == ids:
                self._files[key] = path
                return path
        if self._folder is None:
            if self.directory is not None:
                Path(self.directory).mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="resstream-spill-", dir=self.directory))
            # The folder goes when the last table reading it does (the centre and mean tables share it).
            self._owner = _Folder()
            weakref.finalize(self._owner, shutil.rmtree, str(self._folder), True)
        path = self._folder / f"{len(set(self._files.values())):05d}.bin"
        self._files[key], self._first_ids[key] = path, ids
        return path

    def _append(self, path: Path, arr: np.ndarray) -> None:
        arr = arr.reshape(len(arr), -1)
        have = self._dtypes.get(path)
        if have is None:
            self._dtypes[path], self._width[path] = arr.dtype, arr.shape[1]
        elif have != arr.dtype:
            wider = np.promote_types(have, arr.dtype)
            if wider != have:  # a float32 chunk among float16 ones (a large value): the array becomes float32
                np.fromfile(path, have).astype(wider).tofile(path)
                self._dtypes[path] = wider
            arr = arr.astype(wider)
        with open(path, "ab") as f:
            np.ascontiguousarray(arr).tofile(f)


class _Folder:
    """Held by the tables that read a spill folder; the folder is removed when the last of them is gone."""


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


def _array(chunk) -> np.ndarray:
    return chunk if isinstance(chunk, np.ndarray) else chunk.numpy()


def _distinct(chunks: Mapping) -> list:
    seen: dict[int, object] = {}
    for items in chunks.values():
        for c in items:
            seen.setdefault(id(c), c)
    return list(seen.values())
