"""Reports and the baseline gate: terminal summary, JSON, Markdown, HTML + figures, baselines.

Everything downstream of a run works on the report's JSON form, so any stored report can be
re-rendered or compared later without re-running a model::

    >>> from resstream_assert.report import read_report, compare, render_markdown  # doctest: +SKIP
    >>> diff = compare(read_report("baselines/resnet18.json"), read_report("report.json"),
    ...                ["verdict", "rho:abs>0.1"])                                  # doctest: +SKIP
    >>> diff.failed, print(diff.table())                                            # doctest: +SKIP

Modules: ``collect`` (ReportCollector, read/write), ``rules`` (the compare-fail grammar),
``baseline`` (compare, check), ``merge`` (one report from a run's shards), ``terminal``,
``markdown``, ``html``, ``plots`` (matplotlib, imported only when drawing), ``pytest_plugin``
(the pytest wiring). Names below are imported on first use, so importing this package costs
nothing in an unrelated pytest run.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ReportCollector": "collect", "read_report": "collect", "write_report": "collect",
    "strip_volatile": "collect", "VOLATILE_KEYS": "collect",
    "Rule": "rules", "parse_rule": "rules", "parse_rules": "rules", "compare": "baseline",
    "compare_result": "baseline", "check": "baseline", "BaselineDiff": "baseline", "DiffEntry": "baseline",
    "BaselineDriftError": "baseline", "baseline_from_report": "baseline",
    "render_markdown": "markdown", "render_html": "html", "render_figure": "plots", "write_pngs": "plots",
    "merge_reports": "merge",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
