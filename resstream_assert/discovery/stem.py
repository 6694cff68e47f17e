"""The input size an architecture implies, read from its stem (what runs before the first residual block).

A CIFAR-style ResNet (3x3 stride-1 stem, no max-pool) keeps the image's resolution up to its
first block and is built for 32 px images; an ImageNet-style stem (7x7 stride 2 + max-pool)
downsamples 4x and is built for 224 px. Analysing a CIFAR net at 224 px gives numbers about
upscaled features, so a factory model whose size nobody stated gets the size its stem implies.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from resstream_assert.discovery.torch_graph import block_nodes, split_at
from resstream_assert.errors import DiscoveryError
from resstream_assert.loading.torch_model import eval_mode

__all__ = ["stem_stride", "guess_input_size"]

_PROBE = 64  # px of the image run through the stem; divisible by every stride a stem uses


def stem_stride(module: nn.Module) -> int | None:
    """How much the network downsamples before its first residual block (1 = not at all), or None.

    Example:
        >>> import torchvision
        >>> stem_stride(torchvision.models.resnet18())
        4
    """
    with eval_mode(module), torch.no_grad():
        try:
            nodes = block_nodes(module)
        except DiscoveryError:  # not traceable: discovery says why later (or the ONNX backend reads the model)
            return None
        if not nodes:
            return None
        head, _ = split_at(module, nodes[0].resid_pre)
        param = next(module.parameters(), None)
        x = torch.zeros(1, 3, _PROBE, _PROBE, device=param.device if param is not None else "cpu")
        try:
            out = head(x)
        except Exception:  # noqa: BLE001 - a stem that cannot run at 64 px says nothing about its stride
            return None
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[-1] < 1:
        return None
    return max(1, round(_PROBE / int(out.shape[-1])))


def guess_input_size(module: nn.Module) -> tuple[int, str]:
    """``(size, reason)``: 32 px for a stem that keeps the resolution (CIFAR style), 64 px for one that
    halves it, 224 px otherwise (ImageNet style).

    Example:
        >>> import torchvision
        >>> guess_input_size(torchvision.models.resnet18())[0]
        224
    """
    stride = stem_stride(module)
    if stride == 1:
        return 32, "guessed from the stem: no downsampling before the first residual block (CIFAR style)"
    if stride == 2:
        return 64, "guessed from the stem: 2x downsampling before the first residual block"
    if stride is None:
        return 224, "default (the stem could not be read)"
    return 224, f"guessed from the stem: {stride}x downsampling before the first residual block (ImageNet style)"
