"""Find residual blocks in a torch model from its traced graph (torch.fx), and cut that graph.

A residual add is an ``add`` whose two operands share an ancestor: ``x + f(x)``. The latest
shared ancestor is the block input (``resid_pre``); the operand with fewer ops between it
and the input is the shortcut (``skip_out``), the other the branch (``branch_out``). This
works for torchvision and timm ResNets, ConvNeXt, and option-A (pad) shortcuts alike,
because it never looks at module names; names are only used to label what was found.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from resstream_assert.discovery.residual_map import Block, ResidualMap
from resstream_assert.errors import DiscoveryError
from resstream_assert.loading.torch_model import eval_mode

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
# Ops that pass the branch output through unchanged in eval mode (walked over to find the gain op).
_TRANSPARENT_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)
_TRANSPARENT_NAMES = ("stochastic_depth", "drop_path", "dropout", "identity", "contiguous", "DropPath",
                      "StochasticDepth", "Identity")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU)
_ACTIVATION_NAMES = ("relu", "relu_", "gelu", "silu", "leaky_relu", "elu", "relu6")


@dataclass
class Traced:
    """A model's FX graph plus the native (qualified) name of every node."""

    gm: fx.GraphModule
    qualname: dict[str, str]  # fx node name -> native qualified name (e.g. 'layer1.0.add')


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


_TRACES: "weakref.WeakKeyDictionary[nn.Module, Traced]" = weakref.WeakKeyDictionary()
_NODES: "weakref.WeakKeyDictionary[nn.Module, tuple[BlockNodes, ...]]" = weakref.WeakKeyDictionary()


def trace(module: nn.Module) -> Traced:
    """Trace ``module`` with torch.fx (torchvision's NodePathTracer names), cached per module.

    Example:
        >>> import torchvision
        >>> t = trace(torchvision.models.resnet18())
        >>> t.qualname["add"]
        'layer1.0.add'
    """
    if module in _TRACES:
        return _TRACES[module]
    from torchvision.models.feature_extraction import NodePathTracer

    tracer = NodePathTracer()
    try:
        with eval_mode(module):  # forward() may branch on self.training (dropout): trace the eval-mode graph
            graph = tracer.trace(module)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, AssertionError...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DiscoveryError(
            f"torch.fx could not trace {type(module).__name__} ({type(exc).__name__}: {first}). Residual blocks are "
            "found from the traced graph; data-dependent control flow in forward() prevents tracing. Export the model "
            "to ONNX and pass the .onnx file, or make forward() traceable (no Python branching on tensor values).") from exc
    gm = fx.GraphModule(module, graph)
    qual = {n.name: tracer.node_to_qualname.get(n, n.name) for n in graph.nodes}
    _TRACES[module] = Traced(gm, qual)
    return _TRACES[module]


def copy_graph(module: nn.Module) -> tuple[fx.Graph, dict[str, fx.Node]]:
    """A fresh copy of the module's traced graph (to edit) and its nodes by original name.

    Example:
        >>> import torchvision
        >>> graph, by_name = copy_graph(torchvision.models.resnet18())
        >>> by_name["add"].target.__name__
        'add'
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(trace(module).gm.graph, env))
    return graph, {old.name: new for old, new in env.items()}


def edited_module(module: nn.Module, graph: fx.Graph, by_name: dict[str, fx.Node],
                  added: dict[fx.Node, str] | None = None) -> fx.GraphModule:
    """A ``GraphModule`` running ``graph`` (an edited :func:`copy_graph` of ``module``) that keeps the native names.

    Tracing a ``GraphModule`` again loses the module path of every function node (its adds
    all run in the root's ``forward``), so discovery would have to guess block names from
    the branch's modules. Instead the edited module's trace is recorded here with the
    original qualified names, so its blocks and sites are named as the original's.
    ``by_name`` is the mapping :func:`copy_graph` returned; ``added`` names nodes the edit
    inserted (default: their node names).

    Example:
        >>> import torchvision
        >>> model = torchvision.models.resnet18()
        >>> graph, by_name = copy_graph(model)
        >>> edited = edited_module(model, graph, by_name)
        >>> trace(edited).qualname[by_name["add"].name]
        'layer1.0.add'
    """
    qual = trace(module).qualname
    gm = fx.GraphModule(module, graph)
    names = {new.name: qual.get(old, new.name) for old, new in by_name.items()}
    names.update({node.name: text for node, text in (added or {}).items()})
    copy, env = fx.Graph(), {}
    copy.output(copy.graph_copy(gm.graph, env))
    renamed = {old.name: new.name for old, new in env.items()}
    # A separate GraphModule holds the trace: the cache's value must not keep its key (gm) alive.
    _TRACES[gm] = Traced(fx.GraphModule(gm, copy), {renamed[n]: names.get(n, n) for n in renamed}
                         | {n.name: n.name for n in copy.nodes if n.op == "output"})
    return gm


def split_at(module: nn.Module, node_name: str) -> tuple[fx.GraphModule, fx.GraphModule | None]:
    """Cut ``module``'s FX graph at ``node_name``: ``(head, tail)``; ``tail`` is None if tensors cross the cut.

    ``head(x)`` returns the node's value; ``tail(v)`` runs the rest of the network on it.
    Parameters (``get_attr``) may cross; any other live tensor makes the cut invalid.

    Example:
        >>> head, tail = split_at(resnet18, "add_3")  # doctest: +SKIP
        >>> torch.allclose(tail(head(x)), resnet18(x))  # doctest: +SKIP
        True
    """
    traced = trace(module)
    nodes = list(traced.gm.graph.nodes)
    cut = next(i for i, n in enumerate(nodes) if n.name == node_name)
    head_graph, env = fx.Graph(), {}
    for n in nodes[:cut + 1]:
        env[n] = head_graph.node_copy(n, lambda a: env[a])
    head_graph.output(env[nodes[cut]])
    head = fx.GraphModule(traced.gm, head_graph)
    before = set(nodes[:cut + 1])
    tail_graph = fx.Graph()
    tenv = {nodes[cut]: tail_graph.placeholder("cut")}
    for n in nodes[cut + 1:]:
        for a in n.all_input_nodes:
            if a in tenv:
                continue
            if a in before and a.op == "get_attr":
                tenv[a] = tail_graph.node_copy(a)
            else:
                return head, None  # e.g. a skip over the cut: the tail would need more than resid_sum
        tenv[n] = tail_graph.node_copy(n, lambda a: tenv[a])
    return head, fx.GraphModule(traced.gm, tail_graph)


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
    ancestors = _ancestor_sets(nodes)
    found = []
    for node in nodes:
        operands = _add_operands(node)
        if operands is None:
            continue
        a, b = operands
        common = (ancestors[a] | {a}) & (ancestors[b] | {b})
        common = {n for n in common if n.op != "get_attr"}
        if not common:
            continue
        pre = max(common, key=order.__getitem__)
        # The shortcut has fewer ops between the block input and the add (0 for identity).
        len_a = len(ancestors[a] - ancestors[pre]) if a is not pre else 0
        len_b = len(ancestors[b] - ancestors[pre]) if b is not pre else 0
        skip, branch = (a, b) if len_a < len_b else (b, a)
        if branch is pre:
            continue
        gain_module, gain_param, gain_node = _gain_source(traced.gm, branch, ancestors)
        found.append(BlockNodes(pre.name, skip.name, branch.name, node.name, _post(node).name,
                                gain_module, gain_param, _identity_root(traced.gm, skip) is pre, gain_node))
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
    size = int(input_size or getattr(loaded, "input_size", 224))
    with eval_mode(module):  # the user's module keeps its own train/eval state
        return _discover(module, name, size)


def _discover(module: nn.Module, name: str, size: int) -> ResidualMap:
    found = block_nodes(module)
    if not found:
        n_adds = sum(1 for n in trace(module).gm.graph.nodes if _add_operands(n) is not None)
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

def _ancestor_sets(nodes: list[fx.Node]) -> dict[fx.Node, frozenset]:
    anc: dict[fx.Node, frozenset] = {}
    for n in nodes:  # fx graphs are topologically ordered
        s: set = set()
        for inp in n.all_input_nodes:
            s.add(inp)
            s |= anc[inp]
        anc[n] = frozenset(s)
    return anc


def _add_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or \
             (node.op == "call_method" and node.target in _ADD_METHODS)
    if not is_add or len(node.args) < 2:
        return None
    a, b = node.args[0], node.args[1]
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or "get_attr" in (a.op, b.op):
        return None
    return a, b


def _target_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    return getattr(node.target, "__name__", str(node.target))


def _is_transparent(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module" and isinstance(gm.get_submodule(node.target), _TRANSPARENT_MODULES):
        return True
    return node.op in ("call_function", "call_method", "call_module") and _target_name(gm, node) in _TRANSPARENT_NAMES


def _post(add: fx.Node) -> fx.Node:
    """The block's activation after the add, or the add itself when there is none (ConvNeXt)."""
    users = list(add.users)
    if len(users) != 1:
        return add
    u = users[0]
    if u.op == "call_module":
        root = u.graph.owning_module
        return u if isinstance(root.get_submodule(u.target), _ACTIVATIONS) else add
    if u.op in ("call_function", "call_method") and getattr(u.target, "__name__", u.target) in _ACTIVATION_NAMES:
        return u
    return add


def _param_behind(node) -> str | None:
    """The get_attr target behind ``node`` (through reshape/view), if any."""
    while isinstance(node, fx.Node):
        if node.op == "get_attr":
            return node.target
        if node.op == "call_method" and node.target in ("reshape", "view", "unsqueeze", "to"):
            node = node.args[0]
            continue
        return None
    return None


def _identity_root(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    """The node behind parameter-free identity ops (nn.Identity, eval-mode dropout, ...): a shortcut
    written as ``self.shortcut = nn.Identity()`` is an identity shortcut, not a projection."""
    for _ in range(8):
        if _is_transparent(gm, node) and node.args and isinstance(node.args[0], fx.Node):
            node = node.args[0]
            continue
        break
    return node


def _gain_source(gm: fx.GraphModule, branch: fx.Node,
                 ancestors: dict) -> tuple[str | None, str | None, str | None]:
    """(BN module target, layer-scale parameter, the gain op's node name) of the branch ending at ``branch``."""
    node = branch
    for _ in range(8):
        if _is_transparent(gm, node) and node.args and isinstance(node.args[0], fx.Node):
            node = node.args[0]
            continue
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.modules.batchnorm._BatchNorm):
            return node.target, None, node.name
        if node.op in ("call_function", "call_method") and _target_name(gm, node) in ("mul", "mul_"):
            for arg in node.args:
                param = _param_behind(arg)
                if param is not None:
                    return None, param, node.name
            # A gate computed from the branch itself (squeeze-excitation: x * sigmoid(fc(mean(x)))): the
            # per-channel gain is the norm before the gate, so walk on into x.
            tensors = [a for a in node.args[:2] if isinstance(a, fx.Node)]
            if len(tensors) == 2:
                x, gate = tensors
                if x in ancestors[gate] or gate in ancestors[x]:
                    node = x if x in ancestors[gate] else gate
                    continue
        if node.op == "call_module" and hasattr(gm.get_submodule(node.target), "gamma"):  # timm LayerScale
            return None, f"{node.target}.gamma", node.name
        break
    return None, None, None


def _conv_before(gm: fx.GraphModule, node: fx.Node) -> str | None:
    for _ in range(12):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), (nn.Conv2d, nn.Linear)):
            return node.target
        inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if len(inputs) != 1:
            return None
        node = inputs[0]
    return None


def _weights(gm: fx.GraphModule, bn: BlockNodes, module: nn.Module):
    gain = None
    if bn.gain_module:
        w = gm.get_submodule(bn.gain_module).weight
        gain = None if w is None else w.detach().abs().flatten().cpu().numpy().astype(np.float64)
    elif bn.gain_param:
        gain = _get_attr(module, bn.gain_param).detach().abs().flatten().cpu().numpy().astype(np.float64)
    branch = gm.graph.find_nodes(op="call_module", target=bn.gain_module)[0] if bn.gain_module else \
        next(n for n in gm.graph.nodes if n.name == bn.branch_out)
    conv_name = _conv_before(gm, branch)
    conv = None
    if conv_name:
        w = gm.get_submodule(conv_name).weight.detach()
        conv = w.abs().reshape(w.shape[0], -1).mean(1).cpu().numpy().astype(np.float64)
    return gain, conv, conv_name


def _get_attr(module: nn.Module, target: str) -> torch.Tensor:
    obj = module
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
