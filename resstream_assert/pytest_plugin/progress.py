"""Progress messages (``[resstream] captured ...``) written past pytest's capture without breaking its progress
line: a message ends the open progress line (with its percentage, as pytest ends it at the end of a file), and
the next test result opens a fresh one with its file name, so every progress line reads ``file.py ..  [ 40%]``."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["ProgressLog"]

_OURS = -2  # the reporter's "current path" while our message holds the line (pytest uses -2 the same way)


class ProgressLog:
    """Writes progress messages to pytest's terminal reporter; a plugin, so it can reopen the progress line.

    Example:
        >>> log = ProgressLog(config.pluginmanager.get_plugin("terminalreporter"), capman)  # doctest: +SKIP
        >>> log("[resstream] captured resnet18 [id]: 256 images in 3.1 s")  # doctest: +SKIP
    """

    def __init__(self, reporter: Any, capman: Any) -> None:
        self.reporter, self.capman = reporter, capman

    def __call__(self, line: str) -> None:
        rep = self.reporter
        with self.capman.global_and_fixture_disabled():
            if rep.currentfspath not in (None, _OURS):  # an open progress line: end it with its percentage
                fill = getattr(rep, "_write_progress_information_filling_space", None)
                if fill is not None and rep.verbosity <= 0 and getattr(rep, "_show_progress_info", False):
                    fill()
            rep.ensure_newline()
            rep.write(line, flush=True)  # left open: whatever pytest writes next starts a new line first
            rep.currentfspath = _OURS

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rep = self.reporter
        if rep.currentfspath == _OURS and rep.verbosity <= 0:  # the result's letter needs its file name before it
            rep.currentfspath = None
            rep.write_fspath_result(report.nodeid, "")
