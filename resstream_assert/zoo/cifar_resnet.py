"""CIFAR-style ResNet (He et al. 2016, §4.2) with the option-A identity shortcut.

Three stages of ``n`` BasicBlocks with 16, 32 and 64 channels on 32x32 inputs; depth is
``6n + 2`` (n = 3 gives ResNet-20). Where a block halves the resolution and doubles the
width, option A keeps the shortcut parameter-free: subsample by 2 and zero-pad the new
channels, so the stream there is an exact identity on the old channels. Module names follow
the common reference implementation: ``conv1, bn1, layer1..3, linear``; each block has
``conv1, bn1, conv2, bn2, shortcut``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def _pad_shortcut(x: torch.Tensor, planes: int) -> torch.Tensor:
    # Option A: spatial subsample by 2, zero-pad planes//4 channels on each side.
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))


class LambdaLayer(nn.Module):
    """Wrap a function as a module (the option-A shortcut).

    Example:
        >>> LambdaLayer(partial(_pad_shortcut, planes=32))(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the shortcut, ReLU after the sum (He et al.)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaLayer(partial(_pad_shortcut, planes=planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)  # in place, as the reference implementation (spec W1 trap)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images.

    Example:
        >>> CifarResNet(3, num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, n: int = 3, num_classes: int = 10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20: 3 stages x 3 BasicBlocks, 16/32/64 channels, ~0.27 M parameters.

    Example:
        >>> sum(p.numel() for p in resnet20().parameters()) > 250_000
        True
    """
    return CifarResNet(3, num_classes)
