"""Reports: terminal summary, JSON, Markdown, HTML + figures, merged shards.

Everything downstream of a run works on the report's JSON form, so any stored report can be
re-rendered or compared later without re-running a model::

    >>> from resstream_assert.report import read_report, render_markdown  # doctest: +SKIP
    >>> print(render_markdown(read_report("report.json")))               # doctest: +SKIP

Modules: ``collect`` (ReportCollector, read/write), ``merge`` (one report from a run's
shards), ``terminal``, ``markdown``, ``html``, ``plots`` (matplotlib, imported only when
drawing), ``featviz_grid`` (feature-visualization grids). The baseline comparison is the
gate's (:mod:`resstream_assert.gate.baseline`). Names below are imported on first use, so
importing this package costs nothing in an unrelated pytest run.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ReportCollector": "collect", "read_report": "collect", "write_report": "collect",
    "strip_volatile": "collect", "VOLATILE_KEYS": "collect",
    "render_markdown": "markdown", "render_html": "html", "render_figure": "plots", "write_pngs": "plots",
    "merge_reports": "merge",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
