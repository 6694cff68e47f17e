"""Where resstream_assert keeps what it computes once (captured responses, ONNX exports)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$RESSTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/resstream_assert``, else ``~/.cache/resstream_assert``.

    Example:
        >>> default_cache_dir().name  # doctest: +SKIP
        'resstream_assert'
    """
    env = os.environ.get("RESSTREAM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "resstream_assert"
