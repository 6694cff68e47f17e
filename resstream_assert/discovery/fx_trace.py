"""Trace a torch model with torch.fx (cached per module), and copy, edit or cut its traced graph.

Every node keeps the native (qualified) name of what it runs (``layer1.0.add``): block
discovery (:mod:`.torch_graph`) names blocks and sites from them, and an edited copy of a
graph (:func:`edited_module`) is recorded with the original's names.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch.fx as fx
import torch.nn as nn

from resstream_assert.errors import DiscoveryError
from resstream_assert.loading.torch_model import eval_mode


@dataclass
class Traced:
    """A model's FX graph plus the native (qualified) name of every node."""

    gm: fx.GraphModule
    qualname: dict[str, str]  # fx node name -> native qualified name (e.g. 'layer1.0.add')


_TRACES: "weakref.WeakKeyDictionary[nn.Module, Traced]" = weakref.WeakKeyDictionary()


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
            "to ONNX and pass the .onnx file, or make forward() traceable (no Python branching on tensor values)."
        ) from exc
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
    copy = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
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
    head_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
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
