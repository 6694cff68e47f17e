"""What a node of a traced graph is, for block discovery: a residual add, an op that passes its input
through (identity, eval-mode dropout), the block's activation after the add, the branch's gain op
(BN or layer scale) and the convolution before it. Rules on ops, never on module names.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
# Ops that pass the branch output through unchanged in eval mode (walked over to find the gain op).
_TRANSPARENT_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)
_TRANSPARENT_NAMES = ("stochastic_depth", "drop_path", "dropout", "identity", "contiguous", "DropPath",
                      "StochasticDepth", "Identity")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU)
_ACTIVATION_NAMES = ("relu", "relu_", "gelu", "silu", "leaky_relu", "elu", "relu6")


def ancestor_sets(nodes: list[fx.Node]) -> dict[fx.Node, frozenset]:
    """Every node's ancestors (the nodes its value is computed from), for ``nodes`` in graph order.

    Example:
        >>> from resstream_assert.discovery.fx_trace import trace
        >>> import torchvision
        >>> nodes = list(trace(torchvision.models.resnet18()).gm.graph.nodes)
        >>> anc = ancestor_sets(nodes)
        >>> len(anc[nodes[0]]), nodes[0] in anc[nodes[-1]]
        (0, True)
    """
    anc: dict[fx.Node, frozenset] = {}
    for n in nodes:  # fx graphs are topologically ordered
        s: set = set()
        for inp in n.all_input_nodes:
            s.add(inp)
            s |= anc[inp]
        anc[n] = frozenset(s)
    return anc


def add_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """The two tensor operands of an addition node (``+``, ``torch.add``, ``.add_``), or None for any other node.

    Example:
        >>> from resstream_assert.discovery.fx_trace import trace
        >>> import torchvision
        >>> graph = trace(torchvision.models.resnet18()).gm.graph
        >>> sum(add_operands(n) is not None for n in graph.nodes)
        8
    """
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
        return type(gm.get_submodule(str(node.target))).__name__
    return getattr(node.target, "__name__", str(node.target))


def _is_transparent(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), _TRANSPARENT_MODULES):
        return True
    return node.op in ("call_function", "call_method", "call_module") and _target_name(gm, node) in _TRANSPARENT_NAMES


def post_node(add: fx.Node) -> fx.Node:
    """The block's activation after the add, or the add itself when there is none (ConvNeXt).

    Example:
        >>> from resstream_assert.discovery.fx_trace import trace
        >>> import torchvision
        >>> add = next(n for n in trace(torchvision.models.resnet18()).gm.graph.nodes if n.name == "add")
        >>> post_node(add).target
        'layer1.0.relu'
    """
    users = list(add.users)
    if len(users) != 1:
        return add
    u = users[0]
    if u.op == "call_module":
        root = u.graph.owning_module
        assert root is not None  # a traced graph belongs to its GraphModule
        return u if isinstance(root.get_submodule(str(u.target)), _ACTIVATIONS) else add
    if u.op in ("call_function", "call_method") and getattr(u.target, "__name__", u.target) in _ACTIVATION_NAMES:
        return u
    return add


def _param_behind(node) -> str | None:
    """The get_attr target behind ``node`` (through reshape/view), if any."""
    while isinstance(node, fx.Node):
        if node.op == "get_attr":
            return str(node.target)
        if node.op == "call_method" and node.target in ("reshape", "view", "unsqueeze", "to"):
            node = node.args[0]
            continue
        return None
    return None


def identity_root(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    """The node behind parameter-free identity ops (nn.Identity, eval-mode dropout, ...): a shortcut
    written as ``self.shortcut = nn.Identity()`` is an identity shortcut, not a projection.

    Example:
        >>> from resstream_assert.discovery.fx_trace import trace
        >>> import torchvision
        >>> gm = trace(torchvision.models.resnet18()).gm
        >>> relu = next(n for n in gm.graph.nodes if n.name == "maxpool")
        >>> identity_root(gm, relu) is relu
        True
    """
    for _ in range(8):
        if _is_transparent(gm, node) and node.args and isinstance(node.args[0], fx.Node):
            node = node.args[0]
            continue
        break
    return node


def gain_source(gm: fx.GraphModule, branch: fx.Node,
                ancestors: dict) -> tuple[str | None, str | None, str | None]:
    """(BN module target, layer-scale parameter, the gain op's node name) of the branch ending at ``branch``.

    Example:
        >>> from resstream_assert.discovery.fx_trace import trace
        >>> import torchvision
        >>> gm = trace(torchvision.models.resnet18()).gm
        >>> nodes = list(gm.graph.nodes)
        >>> bn2 = next(n for n in nodes if n.target == "layer1.0.bn2")
        >>> gain_source(gm, bn2, ancestor_sets(nodes))
        ('layer1.0.bn2', None, 'layer1_0_bn2')
    """
    node = branch
    for _ in range(8):
        if _is_transparent(gm, node) and node.args and isinstance(node.args[0], fx.Node):
            node = node.args[0]
            continue
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)),
                                                   nn.modules.batchnorm._BatchNorm):
            return str(node.target), None, node.name
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
        if node.op == "call_module" and hasattr(gm.get_submodule(str(node.target)), "gamma"):  # timm LayerScale
            return None, f"{node.target}.gamma", node.name
        break
    return None, None, None


def conv_before(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """The target of the Conv2d (or Linear) that ``node``'s single-input chain starts from, if any (12 ops
    back at most).

    Example:
        >>> from resstream_assert.discovery.fx_trace import trace
        >>> import torchvision
        >>> gm = trace(torchvision.models.resnet18()).gm
        >>> conv_before(gm, next(n for n in gm.graph.nodes if n.target == "layer1.0.bn2"))
        'layer1.0.conv2'
    """
    for _ in range(12):
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), (nn.Conv2d, nn.Linear)):
            return str(node.target)
        inputs = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if len(inputs) != 1:
            return None
        node = inputs[0]
    return None
