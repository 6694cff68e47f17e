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

import numpy as np
from filelock import FileLock

from resstream_assert.capture.responses import Responses
from resstream_assert.errors import OutputError, ResstreamWarning


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
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"The response cache folder {str(self.directory)!r} cannot be created ({exc}). Give "
                              "another --resstream-cache-dir, or pass --resstream-no-cache.") from exc
        path = self.directory / f"{key}.npz"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    result = Responses.load(path)
                    self.hits += 1
                    return result
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                    # A damaged entry (an interrupted write, a full disk) is discarded and recomputed, not trusted.
                    warnings.warn(ResstreamWarning(
                        f"damaged cache entry {path.name} in {self.directory} ({type(exc).__name__}: {exc}) was "
                        "discarded; recomputing it"), stacklevel=3)
                    path.unlink(missing_ok=True)
            result = compute()
            result.save(path)
            self.misses += 1
            return result


class ArrayCache:
    """Get-or-compute a dict of numpy arrays under a directory (one ``.npz`` per key); ``None`` disables it.

    The same locking as :class:`ResponseCache`: a FileLock per key (concurrent xdist workers
    compute an entry once) and an atomic write (temp file + rename). Used for feature
    visualizations, whose optimisation is the expensive part of a featviz run.

    Example:
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
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.npz"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    with np.load(path, allow_pickle=False) as z:
                        result = {name: z[name] for name in z.files}
                    self.hits += 1
                    return result
                except (OSError, ValueError, KeyError):
                    path.unlink(missing_ok=True)  # a damaged entry is recomputed, not trusted
            result = compute()
            tmp = Path(str(path) + ".tmp.npz")
            np.savez(tmp, **result)
            tmp.replace(path)
            self.misses += 1
            return result
