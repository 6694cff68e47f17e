"""The pytest room: the only part of the package that imports pytest.

``plugin`` (options, ini keys, fixtures; the ``pytest11`` entry point; the run's state it shares
is ``run_state``, its report header ``header``), ``reporting`` (the
hooks that collect results, apply the baseline gate and write the reports), ``scheduling``
(pytest-xdist: one model's tests on one worker). The built-in suite itself is
``resstream_assert.suite`` (``pytest --pyargs resstream_assert.suite``).
"""

from __future__ import annotations


def run_suite(argv: list[str]) -> int:
    """Run pytest with ``argv`` (``resstream run`` builds them) and return its exit status.

    Example:
        >>> run_suite(["--pyargs", "resstream_assert.suite", "--resstream-survey"])  # doctest: +SKIP
        0
    """
    import pytest

    return int(pytest.main(argv))
