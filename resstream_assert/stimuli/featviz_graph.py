"""The forward that feature visualization optimises through: the traced graph cut after the deepest
site a chunk needs, with a clone of each site, and the gradient of a rectified site passed through
its ReLU where the unit is zero.

A post-ReLU unit (``skip_out`` of block X.1 is X.0's ``resid_post``) that is zero on the grey
start image has zero gradient, so plain gradient ascent never moves it (7 of 8 ``skip_out``
images of ``zoo:cifar-resnet20-synth32`` layer2.1 failed their success check). With
``pass_relu`` the objective of such a site reads a surrogate tensor: the same values, forward
(:func:`pass_relu` is exact in float), but its gradient is the pre-activation's. Where the unit
is positive this is the gradient of the unit itself; where it is zero it is the gradient of the
pre-activation, which has the same maximiser. The surrogate is a separate branch of the graph
(the ReLU is recomputed from a clone of its input), so other sites that read the same tensor
(the block's branch reads its input, X.0's ``resid_post``) keep their exact gradients.
"""

from __future__ import annotations

import operator
from typing import Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from resstream_assert.discovery.torch_graph import block_nodes, copy_graph, trace

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}
# Ops between a ReLU and a site that move or pick values without changing their order (the
# option-A shortcut's subsample and zero pad, max-pool, identity): the site stays a rectified copy.
_COPY_FUNCTIONS = {operator.getitem, F.pad, torch.flatten, F.max_pool2d, torch.max_pool2d}
_COPY_METHODS = {"contiguous", "view", "reshape", "clone", "flatten"}
_COPY_MODULES = (nn.Identity, nn.MaxPool2d, nn.Flatten)


def pass_relu(z: torch.Tensor) -> torch.Tensor:
    """``relu(z)`` forward, bit for bit (``z + (0 - z)`` is ``0`` and ``z + (z - z)`` is ``z`` in float),
    with the gradient of ``z`` (the straight-through estimator of the ReLU).

    Example:
        >>> z = torch.tensor([-2.0, 3.0], requires_grad=True)
        >>> y = pass_relu(z); y.sum().backward()
        >>> y.tolist(), z.grad.tolist()
        ([0.0, 3.0], [1.0, 1.0])
    """
    return z + (torch.relu(z) - z).detach()


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        assert isinstance(node.target, str)  # a call_module's target is the module's path
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS


def _is_copy(gm: fx.GraphModule, node: fx.Node) -> bool:
    if len(node.all_input_nodes) != 1:
        return False
    if node.op == "call_module":
        assert isinstance(node.target, str)
        return isinstance(gm.get_submodule(node.target), _COPY_MODULES)
    if node.op == "call_function":
        return node.target in _COPY_FUNCTIONS  # a pad's fill is a constant: no gradient either way
    return node.op == "call_method" and node.target in _COPY_METHODS


def rectifier(gm: fx.GraphModule, site: fx.Node) -> tuple[fx.Node, list[fx.Node]] | None:
    """The ReLU that makes ``site`` rectified, and the copy ops from it to the site (``None``: not rectified).

    Example:
        >>> import torchvision
        >>> from resstream_assert.discovery.torch_graph import trace
        >>> m = torchvision.models.resnet18()
        >>> gm = trace(m).gm; nodes = {n.name: n for n in gm.graph.nodes}
        >>> rectifier(gm, nodes[block_nodes(m)[3].skip_out])[0].target
        'layer2.0.relu'
    """
    chain, node = [], site
    while not _is_relu(gm, node):
        if not _is_copy(gm, node):
            return None
        chain.append(node)
        node = node.all_input_nodes[0]
    return node, chain[::-1]


def site_graph(module: nn.Module, sites: Sequence[tuple[int, str]], *, root: nn.Module | None = None,
               truncate: bool = True, pass_relu_sites: bool = False) -> fx.GraphModule:
    """The traced graph cut after the deepest of ``sites`` ((block, site) pairs); its forward returns
    a tuple with a clone of each site's tensor, taken right after the site's node. ``root``
    supplies the submodules (default ``module``; e.g. a copy moved to a device).
    ``truncate=False`` keeps the whole network (its output is returned last), as lucent runs it.
    ``pass_relu_sites``: a rectified site's output is its :func:`pass_relu` surrogate (same values,
    the pre-activation's gradient where the unit is zero), for optimising.

    Example:
        >>> gm = site_graph(torchvision.models.resnet18(), [(3, "branch_out")])  # doctest: +SKIP
        >>> [o.shape for o in gm(torch.zeros(1, 3, 64, 64))]  # doctest: +SKIP
        [torch.Size([1, 128, 8, 8])]
    """
    nodes, (graph, by_name) = block_nodes(module), copy_graph(module)
    traced = trace(module).gm
    originals = {n.name: n for n in traced.graph.nodes}
    outs: dict[str, fx.Node] = {}
    for b, site in sites:
        name = getattr(nodes[b], site)
        src = by_name[name]
        if name in outs:
            continue
        surrogate = None
        if pass_relu_sites:  # found on the original graph (its modules), built on the copy
            surrogate = _surrogate_on_copy(traced, originals[name], graph, by_name)
        if surrogate is None:
            with graph.inserting_after(src):
                surrogate = graph.call_method("clone", (src,))
        outs[name] = surrogate
    output = next(n for n in graph.nodes if n.op == "output")
    tail = () if truncate else tuple(output.args)
    output.args = (tuple(outs[getattr(nodes[b], s)] for b, s in sites) + tail,)
    gm = fx.GraphModule(root if root is not None else module, graph)
    gm.graph.eliminate_dead_code()  # everything after the deepest site goes
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def _surrogate_on_copy(traced: fx.GraphModule, site: fx.Node, graph: fx.Graph,
                       by_name: dict[str, fx.Node]) -> fx.Node | None:
    found = rectifier(traced, site)
    if found is None:
        return None
    relu, chain = found
    copy_site = by_name[site.name]
    with graph.inserting_before(by_name[relu.name]):  # torchvision's ReLU(inplace=True) overwrites its input
        z = graph.call_method("clone", (by_name[relu.all_input_nodes[0].name],))
    with graph.inserting_after(copy_site):
        last = graph.call_function(pass_relu, (z,))
    for node in chain:
        src, prev = by_name[node.all_input_nodes[0].name], last
        with graph.inserting_after(prev):
            last = graph.node_copy(by_name[node.name], _swap(src, prev))
    return last


def _swap(old: fx.Node, new: fx.Node) -> Callable[[fx.Node], fx.Node]:
    """``node_copy``'s argument map: ``old`` becomes ``new``, every other node stays."""
    return lambda n: new if n is old else n
