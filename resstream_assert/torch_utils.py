"""Two small torch helpers shared by the rooms that run a model.

``module_outputs``: plain forward hooks on named modules, the reference path that checks the
FX capture in the tests, and the un-cloned hook that reproduces lucent's aliasing bug in
feature visualization. Kept deliberately simple (one image batch in, whole module outputs
out), to show why hooks must clone.

``tf32``: TF32 switched on or off on CUDA for a block of work, the user's settings restored
afterwards (a no-op on CPU).
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


@contextmanager
def tf32(device: torch.device, allow: bool) -> Iterator[None]:
    """TF32 on CUDA as asked inside the block; the user's settings are restored afterwards.

    Capture runs with TF32 off: it moves responses by ~1e-3 relative (measured on an H200),
    enough to reorder exemplars.

    Example:
        >>> with tf32(torch.device("cpu"), allow=False):  # nothing to switch on a CPU
        ...     pass
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(allow)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def no_tf32(device: torch.device):
    """TF32 off on CUDA inside the block (see :func:`tf32`).

    Example:
        >>> with no_tf32(torch.device("cpu")):
        ...     pass
    """
    return tf32(device, allow=False)
