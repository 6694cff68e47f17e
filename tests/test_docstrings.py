"""Every example in a docstring runs and prints what it says (examples that need a model or
captured responses are marked ``# doctest: +SKIP`` where they stand)."""

from __future__ import annotations

import doctest
import importlib

import pytest

import resstream_assert

from .test_architecture import PACKAGE, ROOT, _module_name

MODULES = sorted(PACKAGE if m == "__init__" else f"{PACKAGE}.{m}" for m in map(_module_name, ROOT.rglob("*.py")))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")  # `.example()` in the strategies' docs
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=False)
    assert result.failed == 0, (f"{result.failed} of {result.attempted} docstring examples failed in {name} "
                                f"(printed above; `python -m doctest -v {module.__file__}` repeats them)")


def test_the_package_has_examples():
    """Guards the collection above: a glob that found nothing would pass vacuously."""
    assert len(MODULES) > 50 and resstream_assert.__name__ in MODULES
