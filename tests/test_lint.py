"""The package passes its stated lint rules (``[tool.ruff]`` in pyproject.toml), type-checks under its stated
mypy configuration (``[tool.mypy]``) and ships a ``py.typed`` marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_package():
    pytest.importorskip("ruff", reason="the test extra: pip install -e '.[test]'")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "resstream_assert"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing_in_the_package():
    """The package promises types (py.typed): mypy, configured by pyproject.toml, finds no error in it."""
    pytest.importorskip("mypy", reason="the test extra: pip install -e '.[test]'")
    out = subprocess.run([sys.executable, "-m", "mypy", "resstream_assert"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_package_says_it_is_typed():
    assert (ROOT / "resstream_assert" / "py.typed").is_file()
    assert "py.typed" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
