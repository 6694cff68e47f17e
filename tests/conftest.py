"""Fixtures of the project's own tests only (the shared ones are in the repository's conftest.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Keep ONNX exports and cached responses of the test run out of the user's ~/.cache."""
    old = os.environ.get("RESSTREAM_CACHE_DIR")
    os.environ["RESSTREAM_CACHE_DIR"] = str(tmp_path_factory.mktemp("resstream_cache"))
    yield
    if old is None:
        os.environ.pop("RESSTREAM_CACHE_DIR", None)
    else:
        os.environ["RESSTREAM_CACHE_DIR"] = old
