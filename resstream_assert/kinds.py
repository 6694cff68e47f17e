"""The closed vocabularies of a run, as types: what a backend, an engine, a stimulus source can be.

``Literal`` types rather than enums: the values are the strings users type (``--resstream-backend onnx``) and
the strings reports store, so a value needs no conversion at either edge, and mypy still refuses a typo
(``backend="onxx"``) where a function is annotated with one of these. The options table checks the same
values at run time (``config.options``: ``choices``).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["Backend", "Engine", "GateStatus", "Resize", "StimulusSource", "Stimuli", "Storage", "values"]

#: What a model is measured on: a torch module, or an onnxruntime session of an ONNX file.
Backend = Literal["torch", "onnx"]
#: What runs a torch model's forward passes: ``auto`` (onnxruntime on a CPU when the export matches), or one.
Engine = Literal["auto", "torch", "onnxruntime"]
#: Where a block's top-k stimuli come from: probe photographs, or feature visualizations.
StimulusSource = Literal["exemplars", "featviz"]
#: What a run evaluates claims on: one source, or both (one parametrization each).
Stimuli = Literal["exemplars", "featviz", "both"]
#: How captured responses are kept: ``auto`` (untransformed float32, transformed variants float16), or one dtype.
Storage = Literal["auto", "float16", "float32"]
#: How a probe photograph becomes the model's square input.
Resize = Literal["crop", "stretch"]
#: One entry of a baseline comparison (``gate.baseline.DiffEntry.status``).
GateStatus = Literal["ok", "FAIL", "warn", "unstable", "missing", "new"]


def values(kind: object) -> tuple[str, ...]:
    """The strings a ``Literal`` type admits, in order.

    Example:
        >>> values(Backend)
        ('torch', 'onnx')
    """
    return tuple(get_args(kind))
