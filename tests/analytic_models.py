"""Small models for the intervention tests (used as ``tests.analytic_models:NAME`` specs).

``linear_block``: a stem conv, then one residual block ``x + bn(conv(x))`` with no activation
anywhere after the stem's: ``resid_sum = resid_post = I + B``, so the mix ratio under a gain
edit has a closed form. ``tiny_convnext``: two torchvision ``CNBlock`` s (layer scale, not BN,
ends the branch; channels-last inside), the way torchvision's ConvNeXt writes them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.convnext import CNBlock


class LinearBlockNet(nn.Module):
    def __init__(self, channels: int = 12, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.stem(x)
        y = x + self.bn(self.conv(x))
        return self.fc(y.mean((2, 3)))


def linear_block(num_classes: int = 10) -> LinearBlockNet:
    """Seeded weights; BN with varied gamma, beta and running statistics (eval mode)."""
    g = torch.Generator().manual_seed(0)
    net = LinearBlockNet(num_classes=num_classes)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        bn = net.bn
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return net.eval()


class TinyConvNeXt(nn.Module):
    def __init__(self, dim: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 4, stride=4), nn.GroupNorm(1, dim))
        self.blocks = nn.Sequential(CNBlock(dim, 1.0, 0.0), CNBlock(dim, 1.0, 0.0))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def tiny_convnext(num_classes: int = 10) -> TinyConvNeXt:
    """Seeded; the layer scales drawn from U(0.5, 1.5) (torchvision initializes them at 1e-6)."""
    torch.manual_seed(0)
    net = TinyConvNeXt(num_classes=num_classes)
    with torch.no_grad():
        for block in net.blocks:
            block.layer_scale.uniform_(0.5, 1.5)
    return net.eval()
