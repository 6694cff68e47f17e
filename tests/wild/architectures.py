"""Residual networks in the styles of well-known public code, shrunk to test size.

Each section reproduces the idioms of one public code base (written from memory of its
style, not copied): how the shortcut is built, how the add is written, where the
activations sit. Widths are cut to 4-32 channels and every model runs on 32 px inputs.

Every factory takes ``num_classes`` (the loader passes it, inferred from a checkpoint) and
returns an ``nn.Module``; they are usable as ``package.module:factory`` model specs, e.g.
``f"{__name__}:resnet20"``.

``EXPECTED`` holds, per factory, what a correct residual-block discoverer must report; it
is derived from the code below by hand, not from any discoverer's output:

- ``n_blocks``: the number of residual adds of the form ``x + f(x)``;
- ``projection``: per block, True when the shortcut is not the identity (a conv/bn
  downsample, or the option-A strided slice + channel zero-pad); False for a bare tensor,
  ``nn.Identity()``, an empty ``nn.Sequential()`` or a lambda that returns ``x``;
- ``post_activation``: per block, whether an activation is applied right after the add;
- ``channels``: per block, channels of the residual sum at 32 px input;
- ``gain_kind``: per block, ``"bn"`` when the branch's last norm is a BatchNorm (its gamma is
  the per-channel branch gain), ``"none"`` when the branch ends in a conv (pre-activation);
- ``c3_blocks``: the blocks claim C3 analyses (not the first block, identity shortcuts only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init

INPUT_SIZE = 32


# ---------------------------------------------------------------------------------------
# 1. akamaster/pytorch_resnet_cifar10 style: CIFAR ResNet-20, option-A shortcuts
#    (LambdaLayer with a strided slice + zero channel padding; empty nn.Sequential when the
#    shapes match; `out += self.shortcut(x)`).
# ---------------------------------------------------------------------------------------

def _weights_init(m):
    classname = m.__class__.__name__  # noqa: F841 - as in the original code
    # print(classname)
    if isinstance(m, nn.Linear) or isinstance(m, nn.Conv2d):
        init.kaiming_normal_(m.weight)


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super(LambdaLayer, self).__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class CifarBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, option='A', identity='sequential'):
        super(CifarBasicBlock, self).__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        if identity == 'lambda':
            # Some forks write the identity shortcut as a do-nothing lambda layer.
            self.shortcut = LambdaLayer(lambda x: x)
        else:
            self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == 'A':
                """
                For CIFAR10 ResNet paper uses option A.
                """
                self.shortcut = LambdaLayer(lambda x:
                                            F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4), "constant", 0))
            elif option == 'B':
                self.shortcut = nn.Sequential(
                     nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                     nn.BatchNorm2d(self.expansion * planes)
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class CifarResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, width=16, **block_kwargs):
        super(CifarResNet, self).__init__()
        self.in_planes = width

        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1, **block_kwargs)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2, **block_kwargs)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2, **block_kwargs)
        self.linear = nn.Linear(4 * width, num_classes)

        self.apply(_weights_init)

    def _make_layer(self, block, planes, num_blocks, stride, **block_kwargs):
        strides = [stride] + [1]*(num_blocks-1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride, **block_kwargs))
            self.in_planes = planes * block.expansion

        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def resnet20(num_classes=10):
    """akamaster ResNet-20 (3x3 blocks, option-A shortcuts), widths 4/8/16."""
    return CifarResNet(CifarBasicBlock, [3, 3, 3], num_classes=num_classes, width=4)


def resnet20_option_b(num_classes=10):
    """akamaster ResNet-20 with option-B (1x1 conv + BN) projection shortcuts."""
    return CifarResNet(CifarBasicBlock, [3, 3, 3], num_classes=num_classes, width=4, option='B')


def resnet20_lambda_identity(num_classes=10):
    """ResNet-20 whose identity shortcuts are ``LambdaLayer(lambda x: x)`` (option A downsampling)."""
    return CifarResNet(CifarBasicBlock, [3, 3, 3], num_classes=num_classes, width=4, identity='lambda')


# ---------------------------------------------------------------------------------------
# 2. kuangliu/pytorch-cifar style: BasicBlock / Bottleneck with `self.shortcut =
#    nn.Sequential()` (empty) or conv+bn, `out += self.shortcut(x)`; PreActBlock with the
#    shortcut attribute defined only when needed (`if hasattr(self, 'shortcut')`).
# ---------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super(BasicBlock, self).__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3,
                               stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion*planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion*planes,
                          kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion*planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super(Bottleneck, self).__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3,
                               stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion *
                               planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion*planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion*planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion*planes,
                          kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion*planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, width=64):
        super(ResNet, self).__init__()
        self.in_planes = width

        self.conv1 = nn.Conv2d(3, width, kernel_size=3,
                               stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, num_blocks[3], stride=2)
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1]*(num_blocks-1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def ResNet18(num_classes=10):
    """kuangliu ResNet18 ([2, 2, 2, 2] BasicBlocks), widths 4/8/16/32."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, width=4)


def ResNet26(num_classes=10):
    """kuangliu-style Bottleneck ResNet ([2, 2, 2, 2] Bottlenecks, 26 layers), widths 4..32 (x4 out)."""
    return ResNet(Bottleneck, [2, 2, 2, 2], num_classes=num_classes, width=4)


class PreActBlock(nn.Module):
    '''Pre-activation version of the BasicBlock.'''
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super(PreActBlock, self).__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)

        if stride != 1 or in_planes != self.expansion*planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion*planes, kernel_size=1, stride=stride, bias=False)
            )

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, 'shortcut') else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


class PreActResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, width=64):
        super(PreActResNet, self).__init__()
        self.in_planes = width

        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, num_blocks[3], stride=2)
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1]*(num_blocks-1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def PreActResNet18(num_classes=10):
    """kuangliu PreActResNet18 ([2, 2, 2, 2] PreActBlocks), widths 4/8/16/32."""
    return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes=num_classes, width=4)


# ---------------------------------------------------------------------------------------
# 3. `self.shortcut = nn.Identity()` style: branch as one nn.Sequential,
#    `return F.relu(self.branch(x) + self.shortcut(x))`.
# ---------------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class IdentityShortcutResNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths=(8, 16, 32), depth: int = 2):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks, in_ch = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(depth):
                blocks.append(ResidualBlock(in_ch, w, stride=2 if (i > 0 and j == 0) else 1))
                in_ch = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def identity_shortcut_resnet(num_classes=10):
    """nn.Identity() shortcuts, conv+bn projections at the two downsampling blocks, 6 blocks."""
    return IdentityShortcutResNet(num_classes=num_classes)


# ---------------------------------------------------------------------------------------
# 4. xternalz/WideResNet-pytorch style: pre-activation, `equalInOut`, `convShortcut = None`
#    when equal, `torch.add(x if self.equalInOut else self.convShortcut(x), out)`, dropout.
# ---------------------------------------------------------------------------------------

class WideBasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super(WideBasicBlock, self).__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride,
                               padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1,
                               padding=1, bias=False)
        self.droprate = dropRate
        self.equalInOut = (in_planes == out_planes)
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride,
                               padding=0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):
        super(NetworkBlock, self).__init__()
        self.layer = self._make_layer(block, in_planes, out_planes, nb_layers, stride, dropRate)

    def _make_layer(self, block, in_planes, out_planes, nb_layers, stride, dropRate):
        layers = []
        for i in range(int(nb_layers)):
            layers.append(block(i == 0 and in_planes or out_planes, out_planes, i == 0 and stride or 1, dropRate))
        return nn.Sequential(*layers)

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes, widen_factor=1, dropRate=0.0, base=16):
        super(WideResNet, self).__init__()
        nChannels = [base, base*widen_factor, 2*base*widen_factor, 4*base*widen_factor]
        assert((depth - 4) % 6 == 0)
        n = (depth - 4) / 6
        block = WideBasicBlock
        # 1st conv before any network block
        self.conv1 = nn.Conv2d(3, nChannels[0], kernel_size=3, stride=1,
                               padding=1, bias=False)
        # 1st block
        self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], block, 1, dropRate)
        # 2nd block
        self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], block, 2, dropRate)
        # 3rd block
        self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], block, 2, dropRate)
        # global average pooling and classifier
        self.bn1 = nn.BatchNorm2d(nChannels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(nChannels[3], num_classes)
        self.nChannels = nChannels[3]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def forward(self, x):
        out = self.conv1(x)
        out = self.block1(out)
        out = self.block2(out)
        out = self.block3(out)
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        out = out.view(-1, self.nChannels)
        return self.fc(out)


def wrn16_2(num_classes=10):
    """WRN-16-2 (two blocks per group), dropout 0.3, base width 4 (channels 4/8/16/32)."""
    return WideResNet(16, num_classes, widen_factor=2, dropRate=0.3, base=4)


# ---------------------------------------------------------------------------------------
# 5. Bare-tensor shortcut (torchvision-like): `identity = x`, optional `downsample`,
#    `out = out + identity`, then `self.relu(out)`.
# ---------------------------------------------------------------------------------------

def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class PlainBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out = out + identity
        out = self.relu(out)

        return out


class BareTensorResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2), num_classes=10, width=8):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4 * width, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [PlainBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(PlainBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def bare_tensor_resnet(num_classes=10):
    """`identity = x; ...; out = out + identity`, 3 stages x 2 blocks, widths 8/16/32."""
    return BareTensorResNet(num_classes=num_classes)


# ---------------------------------------------------------------------------------------
# 6. timm factories (random init; timm's own definitions).
# ---------------------------------------------------------------------------------------

def timm_resnet18(num_classes=10):
    import timm

    return timm.create_model('resnet18', pretrained=False, num_classes=num_classes)


def timm_resnet10t(num_classes=10):
    """timm resnet10t: deep tiered stem, avg-pool downsample ('d' style) shortcuts, 1 block per stage."""
    import timm

    return timm.create_model('resnet10t', pretrained=False, num_classes=num_classes)


def timm_seresnet18(num_classes=10):
    """timm seresnet18: BasicBlocks with a squeeze-excitation module after bn2."""
    import timm

    return timm.create_model('seresnet18', pretrained=False, num_classes=num_classes)


# ---------------------------------------------------------------------------------------
# Expectations
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What a correct discoverer reports for one architecture at 32 px (see module docstring)."""

    style: str
    n_blocks: int
    projection: tuple[bool, ...]
    post_activation: tuple[bool, ...]
    channels: tuple[int, ...]
    gain_kind: tuple[str, ...]

    def __post_init__(self):
        for name in ("projection", "post_activation", "channels", "gain_kind"):
            assert len(getattr(self, name)) == self.n_blocks, (self.style, name)

    @property
    def c3_blocks(self) -> tuple[int, ...]:
        """Indices of the blocks C3 analyses: all but the first, identity shortcuts only."""
        return tuple(i for i in range(1, self.n_blocks) if not self.projection[i])

    @property
    def c3_has_identity_blocks(self) -> bool:
        return bool(self.c3_blocks)

    def as_dict(self) -> dict:
        """Machine-readable form (JSON-ready)."""
        return {"style": self.style, "n_blocks": self.n_blocks, "projection": list(self.projection),
                "post_activation": list(self.post_activation), "channels": list(self.channels),
                "gain_kind": list(self.gain_kind), "c3_blocks": list(self.c3_blocks),
                "c3_has_identity_blocks": self.c3_has_identity_blocks}


def _stages(depths, widths, first_projection, post=True, gain="bn"):
    """Per-block flags for staged nets: the first block of each stage after the first is a projection."""
    proj, chans = [], []
    for s, (d, w) in enumerate(zip(depths, widths)):
        for j in range(d):
            proj.append(j == 0 and (s > 0 or first_projection))
            chans.append(w)
    n = len(proj)
    return dict(n_blocks=n, projection=tuple(proj), post_activation=(post,) * n, channels=tuple(chans),
                gain_kind=(gain,) * n)


EXPECTED: dict[str, Expected] = {
    "resnet20": Expected("akamaster CIFAR ResNet-20, option-A LambdaLayer pad, empty nn.Sequential identity",
                         **_stages([3, 3, 3], [4, 8, 16], False)),
    "resnet20_option_b": Expected("akamaster CIFAR ResNet-20, option-B conv+bn projection",
                                  **_stages([3, 3, 3], [4, 8, 16], False)),
    "resnet20_lambda_identity": Expected("akamaster-like ResNet-20, LambdaLayer(lambda x: x) identity",
                                         **_stages([3, 3, 3], [4, 8, 16], False)),
    "ResNet18": Expected("kuangliu BasicBlock ResNet18, empty nn.Sequential / conv+bn shortcut",
                         **_stages([2, 2, 2, 2], [4, 8, 16, 32], False)),
    "ResNet26": Expected("kuangliu Bottleneck ResNet, empty nn.Sequential / conv+bn shortcut",
                         **_stages([2, 2, 2, 2], [16, 32, 64, 128], True)),
    "PreActResNet18": Expected("kuangliu PreActResNet18, shortcut only if hasattr, no post-add ReLU",
                               **_stages([2, 2, 2, 2], [4, 8, 16, 32], False, post=False, gain="none")),
    "identity_shortcut_resnet": Expected("nn.Identity() shortcut, F.relu(branch(x) + shortcut(x))",
                                         **_stages([2, 2, 2], [8, 16, 32], False)),
    "wrn16_2": Expected("xternalz WideResNet 16-2, equalInOut / convShortcut, torch.add, dropout",
                        **_stages([2, 2, 2], [8, 16, 32], True, post=False, gain="none")),
    "bare_tensor_resnet": Expected("identity = x; out = out + identity (torchvision-like)",
                                   **_stages([2, 2, 2], [8, 16, 32], False)),
    "timm_resnet18": Expected("timm resnet18", **_stages([2, 2, 2, 2], [64, 128, 256, 512], False)),
    "timm_resnet10t": Expected("timm resnet10t (avg-pool downsample)", **_stages([1, 1, 1, 1], [64, 128, 256, 512], False)),
    "timm_seresnet18": Expected("timm seresnet18 (SE after bn2)", **_stages([2, 2, 2, 2], [64, 128, 256, 512], False)),
}

FACTORIES = {name: globals()[name] for name in EXPECTED}
