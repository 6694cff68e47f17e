"""Random weights whose BatchNorms differ per channel, for models without a checkpoint.

A freshly initialised torchvision network has every BatchNorm at gamma 1, beta 0, mean 0,
variance 1: every channel of a branch is then scaled alike, and claims about per-channel
gains have nothing to find. The tests, benchmarks and property strategies use this to make
random networks whose branches differ per channel, reproducibly.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["randomize_bn"]


def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm of ``module`` random gamma, beta and running statistics (in place, seeded).

    gamma ~ U(0.1, 1.6), beta ~ N(0, 0.3), running mean ~ N(0, 0.3), running variance ~ U(0.5, 1.5).
    Returns ``module``.

    Example:
        >>> import torchvision
        >>> m = randomize_bn(torchvision.models.resnet18(), seed=1)
        >>> bool(m.layer1[0].bn2.weight.std() > 0)
        True
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                draw_bn(m, g)
    return module


def draw_bn(m: nn.modules.batchnorm._BatchNorm, g: torch.Generator) -> None:
    """Draw one BatchNorm's affine parameters and running statistics from ``g`` (in place, in this order:
    gamma in [0.1, 1.6), beta, running mean, running var in [0.5, 1.5)); callers that interleave other
    draws on the same generator keep their sequence.

    Example:
        >>> bn = nn.BatchNorm2d(4)
        >>> with torch.no_grad():
        ...     draw_bn(bn, torch.Generator().manual_seed(0))
        >>> bool((bn.running_var >= 0.5).all())
        True
    """
    n = m.num_features
    m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.1)
    m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    assert m.running_mean is not None and m.running_var is not None, "a BatchNorm without running statistics"
    m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
