"""Random residual networks for hypothesis: a frozen blueprint of what is built, and the module built from it.

``network_blueprints()`` draws a :class:`NetworkBlueprint` (a frozen description of what is
built); :func:`build_network` builds it as a tiny ``nn.Module`` in eval mode with seeded random
weights and randomized BatchNorm / LayerNorm statistics and affine parameters, so branches
differ per channel. The blueprint says what discovery should report for every block. The
public names are re-exported by :mod:`resstream_assert.strategies`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from resstream_assert.loading.random_weights import draw_bn

__all__ = ["BLOCK_KINDS", "SHORTCUT_KINDS", "ADD_OPS", "BlockSpec", "NetworkBlueprint",
           "network_blueprints", "build_network", "residual_networks", "int_range", "choices"]

#: Block kinds: torchvision BasicBlock / Bottleneck, pre-activation, ConvNeXt-like (dwconv, LayerNorm, MLP, scale).
BLOCK_KINDS: tuple[str, ...] = ("basic", "bottleneck", "preact", "convnext")
#: Shortcut kinds. ``identity``: torchvision's ``identity = x ... out += identity``; ``projection``: 1x1 conv + BN;
#: ``option_a``: CIFAR zero-pad (subsample, pad channels); ``nn_identity``: an ``nn.Identity()`` module;
#: ``empty_sequential``: an empty ``nn.Sequential()``; ``bare_tensor``: the input ``x`` in the add expression.
SHORTCUT_KINDS: tuple[str, ...] = ("identity", "projection", "option_a", "nn_identity", "empty_sequential",
                                   "bare_tensor")
#: How the residual add is written: ``out + skip``, ``skip + out``, ``out += skip``, ``torch.add(out, skip)``.
ADD_OPS: tuple[str, ...] = ("out+skip", "skip+out", "out+=skip", "torch.add")
_PROJECTING = ("projection", "option_a")
_POST_ACTS = ("relu_module", "relu_inplace", "functional_relu")
_GAIN = {"basic": "bn", "bottleneck": "bn", "preact": "none", "convnext": "layer_scale"}


@dataclass(frozen=True)
class BlockSpec:
    """One residual block as built, with what discovery should report for it.

    ``spatial`` is the output side (square maps); ``mid_channels`` the branch's inner width;
    ``activation`` the post-add activation style (``None`` when ``post_activation`` is False).

    Example:
        >>> b = BlockSpec(0, "basic", "projection", 4, 8, 8, 2, 16, 8, True, "relu_module", "out+skip", False)
        >>> b.name, b.projection, b.gain_kind
        ('blocks.0', True, 'bn')
    """

    index: int
    kind: str
    shortcut: str
    in_channels: int
    channels: int
    mid_channels: int
    stride: int
    in_spatial: int
    spatial: int
    post_activation: bool
    activation: str | None
    add_op: str
    transition: bool  # a plain (non-residual) conv + BN + ReLU before the block changes width / size

    @property
    def name(self) -> str:
        """The block's module path, which discovery should report as its name."""
        return f"blocks.{self.index}"

    @property
    def projection(self) -> bool:
        """What discovery should report: True only for a conv projection or an option-A shortcut."""
        return self.shortcut in _PROJECTING

    @property
    def gain_kind(self) -> str:
        """The branch's last gain op: ``bn`` (basic, bottleneck), ``layer_scale`` (convnext), ``none`` (preact)."""
        return _GAIN[self.kind]


@dataclass(frozen=True)
class NetworkBlueprint:
    """What :func:`build_network` builds: stem, residual blocks in forward order, head, weight seed.

    Example:
        >>> bp = NetworkBlueprint(16, 4, 3, 0, ())
        >>> bp.input_size, len(bp.blocks)
        (16, 0)
    """

    input_size: int
    stem_channels: int
    num_classes: int
    seed: int
    blocks: tuple[BlockSpec, ...]

    @property
    def shortcut_kinds(self) -> frozenset[str]:
        """The shortcut kinds used by the blocks."""
        return frozenset(b.shortcut for b in self.blocks)


def int_range(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    """``(low, high)`` from an int or a pair, checked (``1 <= low <= high``); raises hypothesis' InvalidArgument.

    Example:
        >>> int_range(3, "depth"), int_range((2, 5), "widths")
        ((3, 3), (2, 5))
    """
    lo, hi = (value, value) if isinstance(value, int) else tuple(value)
    if not 1 <= lo <= hi:
        raise InvalidArgument(f"{what} must be an int or a (low, high) pair with 1 <= low <= high, got {value!r}")
    return int(lo), int(hi)


def choices(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """``values`` as a tuple, checked to be a non-empty subset of ``allowed`` (InvalidArgument otherwise).

    Example:
        >>> choices(["basic"], BLOCK_KINDS, "block_kinds")
        ('basic',)
    """
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise InvalidArgument(f"{what} must be a non-empty subset of {allowed}, got {values!r}")
    return values


@st.composite
def network_blueprints(draw, *, depth: int | tuple[int, int] = (1, 4), widths: int | tuple[int, int] = (2, 12),
                       block_kinds: Sequence[str] = BLOCK_KINDS, shortcut_kinds: Sequence[str] = SHORTCUT_KINDS,
                       input_sizes: int | tuple[int, int] = (16, 32), add_ops: Sequence[str] = ADD_OPS,
                       min_spatial: int = 4) -> NetworkBlueprint:
    """A strategy of :class:`NetworkBlueprint` (no module built; see :func:`residual_networks`).

    ``depth``: number of residual blocks; ``widths``: channel counts (stem, blocks, branch widths);
    ``input_sizes``: input side in px. A stride-2 step is only drawn while the map stays >= ``min_spatial``.
    Blocks with a non-projecting shortcut keep width and size; a transition conv before them may change both.
    ``add_ops`` restricts how the add is written, except that an ``identity`` shortcut is always torchvision's
    ``out += identity``.

    Example:
        >>> bp = network_blueprints(depth=2, block_kinds=["basic"], shortcut_kinds=["projection"]).example()
        >>> len(bp.blocks), {b.shortcut for b in bp.blocks}
        (2, {'projection'})
    """
    d_lo, d_hi = int_range(depth, "depth")
    w_lo, w_hi = int_range(widths, "widths")
    s_lo, s_hi = int_range(input_sizes, "input_sizes")
    kinds = choices(block_kinds, BLOCK_KINDS, "block_kinds")
    shortcuts = choices(shortcut_kinds, SHORTCUT_KINDS, "shortcut_kinds")
    ops = choices(add_ops, ADD_OPS, "add_ops")
    size = draw(st.integers(s_lo, s_hi))
    stem = draw(st.integers(w_lo, w_hi))
    c, s, blocks = stem, size, []
    for i in range(draw(st.integers(d_lo, d_hi))):
        kind = draw(st.sampled_from(kinds))
        shortcut = draw(st.sampled_from(shortcuts))
        can_stride = math.ceil(s / 2) >= min_spatial
        transition = False
        if shortcut in _PROJECTING:
            in_c, in_s = c, s
            stride = draw(st.sampled_from((1, 2))) if can_stride else 1
            out = draw(st.integers(max(c, w_lo), w_hi)) if shortcut == "option_a" else draw(st.integers(w_lo, w_hi))
        else:
            transition = draw(st.booleans())
            in_c = draw(st.integers(w_lo, w_hi)) if transition else c
            in_s = math.ceil(s / 2) if transition and can_stride and draw(st.booleans()) else s
            out, stride = in_c, 1
        mid = out if kind in ("basic", "preact") else draw(st.integers(w_lo, out if kind == "bottleneck" else w_hi))
        post = kind in ("basic", "bottleneck") and draw(st.booleans())
        act = draw(st.sampled_from(_POST_ACTS)) if post else None
        op = "out+=skip" if shortcut == "identity" else draw(st.sampled_from(ops))
        out_s = math.ceil(in_s / stride)
        blocks.append(BlockSpec(i, kind, shortcut, in_c, out, mid, stride, in_s, out_s, post, act, op, transition))
        c, s = out, out_s
    k = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    return NetworkBlueprint(size, stem, k, seed, tuple(blocks))


class _Block(nn.Module):
    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.spec = spec
        cin, cout, mid, stride = spec.in_channels, spec.channels, spec.mid_channels, spec.stride
        if spec.kind == "basic":
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        elif spec.kind == "bottleneck":
            self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
        elif spec.kind == "preact":
            self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        else:  # convnext
            self.dwconv = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
            self.norm = nn.LayerNorm(cin, eps=1e-6)
            self.pwconv1, self.act, self.pwconv2 = nn.Linear(cin, mid), nn.GELU(), nn.Linear(mid, cout)
            self.layer_scale = nn.Parameter(torch.ones(cout, 1, 1))
        if spec.shortcut == "projection":
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        elif spec.shortcut == "nn_identity":
            self.shortcut: nn.Module = nn.Identity()
        elif spec.shortcut == "empty_sequential":
            self.shortcut = nn.Sequential()
        self.pad = ((cout - cin) // 2, cout - cin - (cout - cin) // 2)
        if spec.activation in ("relu_module", "relu_inplace"):
            self.post = nn.ReLU(inplace=spec.activation == "relu_inplace")

    def _skip(self, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        kind = self.spec.shortcut
        if kind == "projection":
            return self.downsample(pre)
        if kind == "option_a":
            if self.spec.stride == 2:
                x = x[:, :, ::2, ::2]
            return F.pad(x, (0, 0, 0, 0, self.pad[0], self.pad[1]))
        if kind in ("nn_identity", "empty_sequential"):
            return self.shortcut(x)
        return x  # identity, bare_tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind, pre = self.spec.kind, x
        if kind == "basic":
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        elif kind == "bottleneck":
            out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
            out = self.bn3(self.conv3(out))
        elif kind == "preact":
            pre = self.relu1(self.bn1(x))  # a projection reads the pre-activated input, as in He et al. 2016
            out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        else:
            y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
            out = self.layer_scale * self.pwconv2(self.act(self.pwconv1(y))).permute(0, 3, 1, 2)
        skip = self._skip(x, pre)
        op = self.spec.add_op
        if op == "out+=skip":
            out += skip
        elif op == "skip+out":
            out = skip + out
        elif op == "torch.add":
            out = torch.add(out, skip)
        else:
            out = out + skip
        if self.spec.activation == "functional_relu":
            return F.relu(out)
        return self.post(out) if self.spec.activation else out


class _Net(nn.Module):
    def __init__(self, bp: NetworkBlueprint):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, bp.stem_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(bp.stem_channels),
                                  nn.ReLU(inplace=True))
        self.transitions = nn.ModuleDict()
        c, s = bp.stem_channels, bp.input_size
        for b in bp.blocks:
            if b.transition:
                stride = 2 if b.in_spatial != s else 1
                self.transitions[str(b.index)] = nn.Sequential(nn.Conv2d(c, b.in_channels, 3, stride, 1, bias=False),
                                                               nn.BatchNorm2d(b.in_channels), nn.ReLU())
            c, s = b.channels, b.spatial
        self.blocks = nn.ModuleList(_Block(b) for b in bp.blocks)
        self.fc = nn.Linear(c, bp.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if str(i) in self.transitions:
                x = self.transitions[str(i)](x)
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def build_network(bp: NetworkBlueprint) -> nn.Module:
    """Build ``bp`` as an ``nn.Module`` in eval mode; weights, norm statistics and layer scales come from ``bp.seed``.

    Example:
        >>> bp = network_blueprints(depth=1, input_sizes=16).example()
        >>> build_network(bp)(torch.zeros(2, 3, 16, 16)).shape[0]
        2
    """
    net = _Net(bp)
    g = torch.Generator().manual_seed(bp.seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                draw_bn(m, g)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
            elif isinstance(m, _Block) and m.spec.kind == "convnext":
                sign = torch.where(torch.rand(m.layer_scale.shape, generator=g) < 0.2, -1.0, 1.0)
                m.layer_scale.copy_(sign * (torch.rand(m.layer_scale.shape, generator=g) * 0.9 + 0.1))
    return net.eval()


def residual_networks(**kwargs) -> st.SearchStrategy[tuple[nn.Module, NetworkBlueprint]]:
    """A strategy of ``(module, blueprint)``: a random residual network and the description of what was built.

    Keyword arguments are those of :func:`network_blueprints` (``depth``, ``widths``, ``block_kinds``,
    ``shortcut_kinds``, ``input_sizes``, ``add_ops``, ``min_spatial``). Shrinking acts on the blueprint,
    so a failing example shrinks to fewer, narrower, simpler blocks.

    Example:
        >>> module, bp = residual_networks(depth=(2, 3), widths=(2, 6), block_kinds=["convnext"]).example()
        >>> module.training, 2 <= len(bp.blocks) <= 3, bp.blocks[0].gain_kind
        (False, True, 'layer_scale')
    """
    return network_blueprints(**kwargs).map(lambda bp: (build_network(bp), bp))
