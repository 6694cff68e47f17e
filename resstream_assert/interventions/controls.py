"""Negative controls: model transforms whose residual-stream statistics are known by construction.

Each applies to any model discovery can read (zoo, torchvision, timm, a user's), through
the ``+nc-...`` spec suffix, right after loading (:func:`resstream_assert.pipeline.load_model`;
DESIGN.md decision 9):

- ``nc-id``: the branch's last affine op (BN gamma and beta, or layer scale) set to 0, so
  ``branch_out == 0`` and ``resid_sum == skip_out``: every channel is pure skip.
- ``nc-plain``: the shortcut summand multiplied by 0, so ``resid_sum == branch_out``:
  every channel is pure overwrite.
- ``nc-perm``: one seeded random permutation per block of the last branch conv's and norm's
  output channels, which keeps each channel's statistics but breaks the pairing of
  ``branch_out[c]`` with ``skip_out[c]``.
- ``nc-rand``: every parameter re-initialized (seeded), BN statistics reset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from resstream_assert.errors import DiscoveryError, ModelSpecError


def apply_control(module: nn.Module, kind: str, *, seed: int = 0, input_size: int = 224) -> nn.Module:
    """Return ``module`` transformed by the negative control ``kind`` (may modify it in place).

    Example:
        >>> import torchvision
        >>> m = apply_control(torchvision.models.resnet18(), "nc-id")
        >>> float(m.layer1[0].bn2.weight.detach().abs().sum())
        0.0
    """
    from resstream_assert.discovery.torch_graph import discover_torch

    fns = {"nc-id": _identity, "nc-plain": _plain, "nc-perm": _permute, "nc-rand": _reinit}
    if kind not in fns:
        raise ModelSpecError(f"unknown negative control {kind!r}; known: {', '.join(fns)}")
    module.eval()
    rmap = discover_torch(module, input_size)
    with torch.no_grad():
        return fns[kind](module, rmap, seed)


def _param(module: nn.Module, target: str) -> nn.Parameter:
    obj: Any = module  # a module, then its submodules, then the parameter
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _identity(module, rmap, seed):
    for block in rmap:
        if block.gain_kind == "bn":
            bn = module.get_submodule(block.gain_source)
            bn.weight.zero_()
            bn.bias.zero_()
        elif block.gain_kind == "layer_scale":
            _param(module, block.gain_source).zero_()
        else:
            raise DiscoveryError(f"nc-id needs a norm or layer scale at the end of each branch; block {block.name} "
                                 "has none, so its branch cannot be zeroed")
    return module


def _plain(module, rmap, seed):
    from resstream_assert.discovery.torch_graph import block_nodes, copy_graph, edited_module, trace

    graph, by_name = copy_graph(module)
    qual, added = trace(module).qualname, {}
    for bn in block_nodes(module):
        add, skip = by_name[bn.resid_sum], by_name[bn.skip_out]
        with graph.inserting_before(add):
            zero = graph.call_function(torch.mul, (skip, 0.0))
        add.replace_input_with(skip, zero)
        added[zero] = qual[bn.resid_sum].rsplit(".", 1)[0] + ".nc_plain_zero"
    graph.lint()
    gm = edited_module(module, graph, by_name, added)  # keeps the native names (a layer-scale block's too)
    gm.eval()
    return gm


def _permute(module, rmap, seed):
    for block in rmap:
        if block.conv_source is None or block.gain_kind not in ("bn", "layer_scale"):
            raise DiscoveryError(f"nc-perm needs a conv (or linear) followed by a norm or layer scale at the end of "
                                 f"each branch; block {block.name} has conv={block.conv_source}, gain={block.gain_kind}")
        perm = torch.as_tensor(np.random.default_rng([seed, block.index]).permutation(block.channels))
        conv = module.get_submodule(block.conv_source)
        conv.weight.copy_(conv.weight[perm])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[perm])
        if block.gain_kind == "bn":
            bn = module.get_submodule(block.gain_source)
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                if t is not None:
                    t.copy_(t[perm])
        else:
            p = _param(module, block.gain_source)
            p.copy_(p.reshape(block.channels, -1)[perm].reshape(p.shape))
    return module


def _reinit(module, rmap, seed):
    torch.manual_seed(seed)
    for m in module.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    for block in rmap:  # layer scales are bare parameters: back to torchvision's init value
        if block.gain_kind == "layer_scale":
            p = _param(module, block.gain_source)
            p.fill_(float(p.abs().mean()) if float(p.abs().mean()) > 0 else 1e-6)
    return module
