"""Find residual blocks in a torch model from its traced graph (torch.fx), and cut that graph.

A residual add is an ``add`` whose two operands share an ancestor: ``x + f(x)``. The latest
shared ancestor is the block input (``resid_pre``); the operand with fewer ops between it
and the input is the shortcut (``skip_out``), the other the branch (``branch_out``). This
works for torchvision and timm ResNets, ConvNeXt, and option-A (pad) shortcuts alike,
because it never looks at module names; names are only used to label what was found.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from resstream_assert.discovery.fx_trace import Traced, copy_graph, edited_module, split_at, trace
from resstream_assert.discovery.node_roles import (add_operands, ancestor_sets, conv_before, gain_source,
                                                   identity_root, post_node)
from resstream_assert.discovery.residual_map import Block, ResidualMap
from resstream_assert.errors import DiscoveryError
from resstream_assert.loading.torch_model import eval_mode

__all__ = ["BlockNodes", "Traced", "block_nodes", "copy_graph", "discover_torch", "edited_module", "split_at",
           "trace"]


@dataclass(frozen=True)
class BlockNodes:
    """The FX node names behind one block's canonical sites (used by capture and controls)."""

    resid_pre: str
    skip_out: str
    branch_out: str
    resid_sum: str
    resid_post: str
    gain_module: str | None
    gain_param: str | None
    identity_skip: bool = False  # the shortcut is the block input itself (bare, or through nn.Identity & co.)
    gain_node: str | None = None  # the FX node of the branch's last affine op (BN call, layer-scale mul)


_NODES: "weakref.WeakKeyDictionary[nn.Module, tuple[BlockNodes, ...]]" = weakref.WeakKeyDictionary()


def block_nodes(module: nn.Module) -> tuple[BlockNodes, ...]:
    """The residual blocks of ``module`` as FX node names, in forward order.

    Example:
        >>> import torchvision
        >>> len(block_nodes(torchvision.models.resnet18()))
        8
    """
    if module in _NODES:
        return _NODES[module]
    traced = trace(module)
    nodes = list(traced.gm.graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    ancestors = ancestor_sets(nodes)
    found = []
    for node in nodes:
        operands = add_operands(node)
        if operands is None:
            continue
        a, b = operands
        common = {n for n in (ancestors[a] | {a}) & (ancestors[b] | {b}) if n.op != "get_attr"}
        if not common:
            continue
        pre = max(common, key=order.__getitem__)
        # The shortcut has fewer ops between the block input and the add (0 for identity).
        len_a = len(ancestors[a] - ancestors[pre]) if a is not pre else 0
        len_b = len(ancestors[b] - ancestors[pre]) if b is not pre else 0
        skip, branch = (a, b) if len_a < len_b else (b, a)
        if branch is pre:
            continue
        gain_module, gain_param, gain_node = gain_source(traced.gm, branch, ancestors)
        found.append(BlockNodes(pre.name, skip.name, branch.name, node.name, post_node(node).name,
                                gain_module, gain_param, identity_root(traced.gm, skip) is pre, gain_node))
    _NODES[module] = tuple(found)
    return _NODES[module]


def discover_torch(loaded, input_size: int | None = None) -> ResidualMap:
    """Build the :class:`ResidualMap` of a torch model (a ``LoadedModel`` or a bare ``nn.Module``).

    Example:
        >>> import torchvision
        >>> rmap = discover_torch(torchvision.models.resnet50(), 224)
        >>> len(rmap), rmap[0].projection
        (16, True)
    """
    module = getattr(loaded, "module", loaded)
    name = getattr(loaded, "name", type(module).__name__)
    size = int(input_size) if input_size else int(getattr(loaded, "input_size", 224))
    with eval_mode(module):  # the user's module keeps its own train/eval state
        return _discover(module, name, size)


def _discover(module: nn.Module, name: str, size: int) -> ResidualMap:
    found = block_nodes(module)
    if not found:
        n_adds = sum(1 for n in trace(module).gm.graph.nodes if add_operands(n) is not None)
        raise DiscoveryError(
            f"No residual block found in {name}: searched the traced graph's {n_adds} tensor additions for one "
            "of the form x + f(x) (an add whose two operands share an input). Networks without skip connections "
            "(VGG, AlexNet, plain CNNs) have no residual stream to test; pick a residual network (ResNet, "
            "Wide-ResNet, ResNeXt, ConvNeXt, ...).")
    traced = trace(module)
    shapes = _shapes(traced.gm, size)
    qual = traced.qualname
    blocks = []
    for i, bn in enumerate(found):
        shape = shapes.get(bn.resid_sum)
        if shape is None or len(shape) != 4:
            raise DiscoveryError(f"Residual add {qual[bn.resid_sum]!r} in {name} does not produce an NCHW feature "
                                 f"map (shape {shape}); only convolutional residual streams are supported.")
        gain, conv, conv_name = _weights(traced.gm, bn, module)
        sites = {"resid_pre": qual[bn.resid_pre], "skip_out": qual[bn.skip_out], "branch_out": qual[bn.branch_out],
                 "resid_sum": qual[bn.resid_sum], "resid_post": qual[bn.resid_post]}
        blocks.append(Block(
            index=i, name=_block_name(bn, qual), sites=sites, channels=int(shape[1]),
            spatial=(int(shape[2]), int(shape[3])), projection=not bn.identity_skip,
            post_activation=bn.resid_post != bn.resid_sum,
            gain_kind="bn" if bn.gain_module else ("layer_scale" if bn.gain_param else "none"),
            gain_source=bn.gain_module or bn.gain_param, conv_source=conv_name,
            branch_gain=gain, conv_magnitude=conv))
    return ResidualMap(name, size, tuple(blocks), "torch")


# --- helpers -----------------------------------------------------------------------------

def _weights(gm: fx.GraphModule, bn: BlockNodes,
             module: nn.Module) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """The branch's per-channel |gain| (BN gamma or layer scale), its conv's mean |weight| per output channel,
    and that conv's target (None each where there is none)."""
    gain = None
    if bn.gain_module:
        w = cast("torch.Tensor | None", gm.get_submodule(bn.gain_module).weight)  # None: BN without affine
        gain = None if w is None else w.detach().abs().flatten().cpu().numpy().astype(np.float64)
    elif bn.gain_param:
        gain = _get_attr(module, bn.gain_param).detach().abs().flatten().cpu().numpy().astype(np.float64)
    branch = gm.graph.find_nodes(op="call_module", target=bn.gain_module)[0] if bn.gain_module else \
        next(n for n in gm.graph.nodes if n.name == bn.branch_out)
    conv_name = conv_before(gm, branch)
    conv = None
    if conv_name:
        w = cast(torch.Tensor, gm.get_submodule(conv_name).weight).detach()
        conv = w.abs().reshape(w.shape[0], -1).mean(1).cpu().numpy().astype(np.float64)
    return gain, conv, conv_name


def _get_attr(module: nn.Module, target: str) -> torch.Tensor:
    obj: Any = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _block_name(bn: BlockNodes, qual: dict[str, str]) -> str:
    """The block's module path: the parent of its add ('layer1.0.add' -> 'layer1.0')."""
    name = qual[bn.resid_sum]
    if "." not in name:  # a user's re-traced GraphModule: name it after the branch's module
        name = qual[bn.branch_out]
    return name.rsplit(".", 1)[0] if "." in name else name


def _shapes(gm: fx.GraphModule, size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every node for one (1, 3, size, size) input."""
    from torch.fx.passes.shape_prop import ShapeProp

    param = next(gm.parameters(), None)
    x = torch.zeros(1, 3, size, size, device=param.device if param is not None else "cpu")
    with torch.no_grad():
        try:
            ShapeProp(gm).propagate(x)
        except Exception as exc:
            raise DiscoveryError(f"A forward pass at {size}x{size} px failed ({type(exc).__name__}: {exc}). "
                                 "Pass the input size the model expects (--resstream-input-size).") from exc
    return {n.name: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
            if isinstance(n.meta.get("tensor_meta"), object) and hasattr(n.meta.get("tensor_meta"), "shape")}
