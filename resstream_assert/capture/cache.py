"""On-disk cache of captured responses, keyed by content hashes, safe across xdist workers.

The key covers everything a response depends on: the weights (digest), the probe images
(digest), the stimulus variant, the sites, the input size, the backend and the versions of
this package and of the framework. A FileLock per key makes concurrent workers compute
each entry once; writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Callable

from filelock import FileLock

from resstream_assert.capture.responses import Responses, load_checked, save_checked
from resstream_assert.errors import CacheEntryError
from resstream_assert.errors import OutputError, ResstreamWarning
from resstream_assert.paths import system_location


def cache_key(**parts) -> str:
    """A sha256 over the JSON of ``parts`` (sorted keys).

    Example:
        >>> len(cache_key(model="abc", variant="id"))
        64
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class ResponseCache:
    """Get-or-compute :class:`Responses` under a directory; ``directory=None`` disables caching.

    ``hits`` and ``misses`` count what happened, so tests can prove a second session reuses it.

    Example:
        >>> cache = ResponseCache(None)
        >>> cache.get_or_compute("k", lambda: None) is None
        True
    """

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: str, compute: Callable[[], Responses]) -> Responses:
        if self.directory is None:
            self.misses += 1
            return compute()
        _make(self.directory)
        path = self.directory / f"{key}.npz"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    result = Responses.load(path, key=key)
                    self.hits += 1
                    return result
                except _UNTRUSTED as exc:
                    _discard(path, self.directory, exc)
            result = compute()
            result.save(path, key=key)
            self.misses += 1
            return result


class ArrayCache:
    """Get-or-compute a dict of numpy arrays under a directory (one ``.npz`` per key); ``None`` disables it.

    The same locking as :class:`ResponseCache`: a FileLock per key (concurrent xdist workers
    compute an entry once) and an atomic write (temp file + rename). Used for feature
    visualizations, whose optimisation is the expensive part of a featviz run.

    Example:
        >>> import numpy as np
        >>> ArrayCache(None).get_or_compute("k", lambda: {"a": np.zeros(2)})["a"].shape
        (2,)
    """

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: str, compute: Callable[[], dict]) -> dict:
        if self.directory is None:
            self.misses += 1
            return compute()
        _make(self.directory)
        path = self.directory / f"{key}.npz"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    result = dict(load_checked(path, key))
                    self.hits += 1
                    return result
                except _UNTRUSTED as exc:
                    _discard(path, self.directory, exc)
            result = compute()
            save_checked(path, result, key)
            self.misses += 1
            return result


#: What reading an entry can raise: a damaged file (an interrupted write, a full disk), or one that was not
#: written for its key or was changed since (a copied or planted file). Each is discarded and recomputed.
_UNTRUSTED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _discard(path: Path, directory: Path, exc: BaseException) -> None:
    why = str(exc) if isinstance(exc, CacheEntryError) else f"{type(exc).__name__}: {exc}"
    warnings.warn(ResstreamWarning(f"cache entry {path.name} in {directory} is not trusted ({why}); it was "
                                   "discarded and is recomputed"), stacklevel=4)
    path.unlink(missing_ok=True)


def _make(directory: Path) -> None:
    """Create the cache folder: never a system folder, wherever a symlink points (``--resstream-cache-dir``)."""
    why = system_location(directory)
    if why:
        raise OutputError(f"The cache folder {str(directory)!r} cannot be used: {why}. Give another "
                          "--resstream-cache-dir, or pass --resstream-no-cache.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"The response cache folder {str(directory)!r} cannot be created ({exc}). Give another "
                          "--resstream-cache-dir, or pass --resstream-no-cache.") from exc
