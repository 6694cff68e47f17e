"""How results are named and ordered in reports and baselines (their JSON form).

A claim result's identity is (model, backend label, claim); the stimulus source is part of
the backend label (``torch+featviz``), so a feature-visualization result is a row of its own
and is compared with a feature-visualization baseline. Stdlib only: the gate and every
renderer use these, in every pytest run.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

__all__ = ["claim_sort_key", "model_label", "source", "backend_label", "result_key", "pair_of", "model_pairs"]


def claim_sort_key(claim: str) -> tuple:
    """Natural order of claim ids, so ``C2`` comes before ``C10``.

    Example:
        >>> sorted(["C10", "C2", "C1b"], key=claim_sort_key)
        ['C1b', 'C2', 'C10']
    """
    parts = re.split(r"(\d+)", claim)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def model_label(model: str, backend: str) -> str:
    """The row label of a (model, backend) pair: ``model[backend]``.

    Example:
        >>> model_label("zoo:resnet18-synth96", "onnx")
        'zoo:resnet18-synth96[onnx]'
    """
    return f"{model or '?'}[{backend or '?'}]"


def source(result: Mapping[str, Any]) -> str:
    """The stimulus source of a result: ``exemplars`` (the default, left out of the JSON) or ``featviz``."""
    return str(result.get("stimuli") or "exemplars")


def backend_label(result: Mapping[str, Any]) -> str:
    """The backend column of a result: its backend, plus ``+SOURCE`` when its stimuli are not exemplars.

    The stimulus source is part of a result's identity like the backend: a featviz result is a
    row of its own in tables and the matrix, and is compared with a featviz baseline.

    Example:
        >>> backend_label({"backend": "torch"}), backend_label({"backend": "torch", "stimuli": "featviz"})
        ('torch', 'torch+featviz')
    """
    backend = str(result.get("backend", ""))
    return backend if source(result) == "exemplars" else f"{backend}+{source(result)}"


def result_key(result: Mapping[str, Any]) -> tuple[str, str, str]:
    """The identity of a claim result in a report: (model, backend label, claim)."""
    return (str(result.get("model", "")), backend_label(result), str(result.get("claim", "")))


def pair_of(result: Mapping[str, Any]) -> tuple[str, str]:
    """(model, backend label) of a result: its row in the matrix and its section in the reports."""
    return str(result.get("model", "")), backend_label(result)


def model_pairs(results: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The (model, backend label) pairs of a report's results, in report order, without repeats."""
    seen: dict[tuple[str, str], None] = {}
    for r in results:
        seen.setdefault(pair_of(r), None)
    return list(seen)
