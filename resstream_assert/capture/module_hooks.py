"""Plain forward hooks on named modules: the reference path for tests and user site maps.

Kept deliberately simple (one image batch in, whole module outputs out) so that it can
serve as an independent check of the FX capture, and to show why hooks must clone.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from resstream_assert.errors import CaptureError


@contextmanager
def module_outputs(model: nn.Module, names: list[str], *, clone: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named module during the forward passes run inside the block.

    With ``clone=False`` the stored tensor is the module's own output object, which later
    in-place ops (torchvision's ``out += identity``, ``ReLU(inplace=True)``) overwrite;
    this exists to demonstrate that failure. A module that fires twice keeps its last call.
    Hooks are removed on exit, and a module that never fired raises :class:`CaptureError`.

    Example:
        >>> with module_outputs(model, ["layer1.0.bn2"]) as out:  # doctest: +SKIP
        ...     model(x)
        >>> out["layer1.0.bn2"].shape  # doctest: +SKIP
    """
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise CaptureError(f"no module named {unknown[0]!r}; e.g. {list(modules)[1:6]}")
    out: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str):
        def hook(_module, _inputs, output):
            t = output[0] if isinstance(output, (tuple, list)) else output
            out[name] = t.detach().clone() if clone else t
        return hook

    try:
        for n in names:
            handles.append(modules[n].register_forward_hook(make(n)))
        yield out
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in out]
    if missing:
        raise CaptureError(f"module(s) {missing} never ran during the forward pass")
