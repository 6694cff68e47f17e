"""Re-run only the part of a torch model that an edit changes, many edits at once (torch.fx).

An edit at one node of the traced graph changes that node's descendants and nothing
else. So an intervention needs two pieces:

* :func:`build_head`: the unmodified model, run once, returning the values that cross into
  the changed part (the *frontier*) for every block of interest in one pass;
* :func:`build_segment`: the changed part alone, from the frontier to what is read out (the
  block's sites, reduced to center unit and spatial mean, or the logits), with an edit
  module in it. The edit takes one factor per (group, channel): ``G`` groups of the same
  images are stacked along the batch axis, so one call carries ``G`` edits.

Edits (``mode``):

* ``gain``: the output ``y`` of the branch's last affine op (BN, layer scale) becomes
  ``f * y + o`` per channel: with ``o = (1 - f) * beta`` it is exactly BN with gamma scaled by
  ``f`` (beta held); with ``o = 0``, gamma and beta both scaled;
* ``shortcut``: the shortcut summand becomes ``f * skip`` in the residual add only (an
  identity shortcut is also the branch's input, which must not change);
* ``sum``: no edit; an identity module after the residual add, where attribution hooks attach.

The model is never modified: the segment is a new graph over the traced copy's modules,
and all its edits happen on activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from resstream_assert.discovery.torch_graph import BlockNodes, trace
from resstream_assert.errors import InterventionError

MODES = ("gain", "shortcut", "sum")
# Ops that act on each position and channel alone (eval mode): a segment made only of these gives the
# same center unit whether it runs on whole maps or on their center pixels (see Segment.pointwise).
_POINTWISE_MODULES = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
                      nn.Identity, nn.Dropout, nn.Dropout2d)
_POINTWISE_FUNCTIONS = {"add", "iadd", "mul", "imul", "relu", "relu_", "gelu", "silu", "leaky_relu", "elu", "relu6",
                        "clone", "contiguous", "dropout", "identity", "add_", "mul_"}
#: Sites read out by a ``sites`` segment (resid_pre never changes).
READ_SITES = ("skip_out", "branch_out", "resid_sum", "resid_post")


class GroupScale(nn.Module):
    """``x * factor[g, c] + offset[g, c]`` for group ``g`` of a batch of ``G`` stacked groups.

    ``factor``/``offset`` are ``(G, C)`` tensors set before each call (``offset`` may be None).
    The channel axis is 1 (NCHW) or, failing that, the last one (channels-last layer scales).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.factor: torch.Tensor | None = None
        self.offset: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, o = self.factor, self.offset
        if f is None:
            return x
        g = f.shape[0]
        if x.shape[0] % g:
            raise InterventionError(f"batch of {x.shape[0]} is not a whole number of {g} edit groups")
        axis = 1 if x.dim() >= 2 and x.shape[1] == self.channels else x.dim() - 1
        if x.shape[axis] != self.channels:
            raise InterventionError(f"the edited tensor has shape {tuple(x.shape)}; no axis of size {self.channels} "
                                    "(the block's channels) to scale")
        shape = [g, 1] + [1] * (x.dim() - 1)
        shape[axis + 1] = self.channels
        xs = x.reshape(g, -1, *x.shape[1:])
        out = xs * f.to(x.dtype).view(shape)
        if o is not None:
            out = out + o.to(x.dtype).view(shape)
        return out.reshape(x.shape)


class SitePoint(nn.Module):
    """An identity module after the residual add: attribution libraries hook module outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def reduce_site(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Center unit ``[H//2, W//2]`` and spatial mean per channel of an NCHW map (fresh tensors)."""
    if x.dim() != 4:
        raise InterventionError(f"a site produced a {x.dim()}-D tensor; expected NCHW")
    h, w = x.shape[2], x.shape[3]
    return x[:, :, h // 2, w // 2].clone(), x.mean(dim=(2, 3))


@dataclass
class Segment:
    """A compiled changed part: ``gm(*frontier) -> {site: (center, mean)}`` tuple or logits.

    ``frontier`` names the original nodes whose values are its inputs (in order); ``sites``
    the read-out sites in output order (empty for logits); ``edit`` the :class:`GroupScale`
    (None in ``sum`` mode); ``point`` the :class:`SitePoint` (``sum`` mode only).
    ``pointwise`` is True when every op of the segment acts per position and channel (BN in
    eval, activations, adds, per-channel scales): its center units can then be computed from
    the frontier's center pixels alone (exact, and far cheaper than whole maps).
    """

    gm: fx.GraphModule
    frontier: tuple[str, ...]
    sites: tuple[str, ...]
    edit: GroupScale | None
    point: SitePoint | None
    mode: str
    pointwise: bool = False

    def run(self, values: list[torch.Tensor], factor: torch.Tensor | None = None,
            offset: torch.Tensor | None = None):
        """Run ``G = len(factor)`` edit groups on the same frontier ``values`` (each of batch ``n``)."""
        g = 1 if factor is None else int(factor.shape[0])
        if self.edit is not None:
            self.edit.factor, self.edit.offset = factor, offset
        try:
            # repeat() copies: the segment's in-place ops (out += identity, ReLU(inplace)) never touch the inputs.
            return self.gm(*[v.repeat(g, *([1] * (v.dim() - 1))) for v in values])
        finally:
            if self.edit is not None:
                self.edit.factor = self.edit.offset = None


def _reachable(start, step) -> set[fx.Node]:
    """``start`` and every node reached from it by repeating ``step`` (a node -> its neighbours)."""
    out, todo = set(), list(start)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(step(n))
    return out


def _descendants(node: fx.Node) -> set[fx.Node]:
    return _reachable(node.users, lambda n: n.users)


def _ancestors_or_self(nodes) -> set[fx.Node]:
    return _reachable(nodes, lambda n: n.all_input_nodes)


def _edited(bn: BlockNodes, by_name: dict[str, fx.Node], mode: str) -> tuple[fx.Node, set[fx.Node]]:
    """The node the edit acts at (the gain op, or the residual add) and the nodes whose value it changes.

    Example:
        >>> root, changed = _edited(bn, by_name, "shortcut")  # doctest: +SKIP
        >>> root in changed  # doctest: +SKIP
        True
    """
    if mode == "gain":
        if bn.gain_node is None:
            raise InterventionError("the block's branch ends in no affine op (BN or layer scale) whose gain could be "
                                    "scaled")
        root = by_name[bn.gain_node]
        return root, _descendants(root)
    add = by_name[bn.resid_sum]
    return add, {add} | _descendants(add)


def _read_out(bn: BlockNodes, nodes: list[fx.Node], by_name: dict[str, fx.Node],
              outputs: str) -> tuple[tuple[str, ...], list[fx.Node]]:
    """The sites read out and their nodes: the block's :data:`READ_SITES`, or none and the logits node."""
    if outputs == "logits":
        out_node = next(n for n in nodes if n.op == "output")
        result = out_node.args[0]
        if not isinstance(result, fx.Node):
            raise InterventionError("the model's forward returns a structure, not one logits tensor; the downstream "
                                    "effect needs a single output")
        return (), [result]
    return READ_SITES, [by_name[getattr(bn, s)] for s in READ_SITES]


def _frontier(seg: list[fx.Node], targets: list[fx.Node]) -> list[fx.Node]:
    """The values that cross into the segment: its nodes' inputs from outside it (parameters aside), and the
    read-out nodes it does not compute (unchanged values, read as they are)."""
    seg_set = set(seg)
    frontier: list[fx.Node] = []
    for n in seg + [t for t in targets if t not in seg_set]:
        for a in ([n] if n not in seg_set else n.all_input_nodes):
            if a not in seg_set and a.op != "get_attr" and a not in frontier:
                frontier.append(a)
    return frontier


def _edit_modules(mode: str, channels: int | None) -> tuple[GroupScale | None, SitePoint | None, nn.Module]:
    """The edit's modules (a :class:`GroupScale` for ``gain`` and ``shortcut``, a :class:`SitePoint` for
    ``sum``) and the module holding them under the names the segment calls (``_rs_edit``, ``_rs_point``).

    Example:
        >>> edit, point, holder = _edit_modules("sum", None)
        >>> edit is None, [name for name, _ in holder.named_children()]
        (True, ['_rs_point'])
    """
    edit = GroupScale(channels or 0) if mode in ("gain", "shortcut") else None
    point = SitePoint() if mode == "sum" else None
    holder = nn.Module()
    if edit is not None:
        holder.add_module("_rs_edit", edit)
    if point is not None:
        holder.add_module("_rs_point", point)
    return edit, point, holder


def _inputs(new: fx.Graph, frontier: list[fx.Node], mode: str, root: fx.Node,
            skip: fx.Node) -> tuple[dict[fx.Node, fx.Node], fx.Node | None]:
    """The segment graph's inputs: a placeholder per frontier value (the gain op's edited in ``gain`` mode),
    and in ``shortcut`` mode the edited shortcut the residual add reads instead of ``skip``."""
    env: dict[fx.Node, fx.Node] = {}
    for n in frontier:
        env[n] = new.placeholder(f"in_{n.name}")
    skip_edit = None
    if mode == "gain":
        env[root] = new.call_module("_rs_edit", (env[root],))
    elif mode == "shortcut":
        skip_edit = new.call_module("_rs_edit", (env[skip],))
    return env, skip_edit


def _copy_segment(new: fx.Graph, env: dict[fx.Node, fx.Node], seg: list[fx.Node], bn: BlockNodes,
                  by_name: dict[str, fx.Node], sites: tuple[str, ...], skip_edit: fx.Node | None,
                  hook: bool) -> dict[str, fx.Node]:
    """Copy the segment's nodes into ``new`` (the add reading the edited shortcut; with ``hook`` a
    :class:`SitePoint` after it) and reduce each read-out site: ``{site: reduce_site node}``."""
    add, skip = by_name[bn.resid_sum], by_name[bn.skip_out]
    seg_set = set(seg)
    reductions: dict[str, fx.Node] = {}

    def value(site: str) -> fx.Node:
        node = by_name[getattr(bn, site)]
        return skip_edit if site == "skip_out" and skip_edit is not None else env[node]

    for s in sites:  # frontier sites first: the segment's in-place ops may overwrite them later
        node = by_name[getattr(bn, s)]
        if node not in seg_set:
            reductions[s] = new.call_function(reduce_site, (value(s),))
    for n in seg:
        for a in n.all_input_nodes:
            if a.op == "get_attr" and a not in env:
                env[a] = new.node_copy(a)
        if n is add and skip_edit is not None:
            env[n] = new.node_copy(n, lambda a: skip_edit if a is skip else env[a])
        else:
            env[n] = new.node_copy(n, lambda a: env[a])
        if n is add and hook:
            hooked = new.call_module("_rs_point", (env[n],))
            env[n] = new.call_method("clone", (hooked,))  # in-place ReLU after the add must not touch the hook's tensor
        for s in sites:
            if by_name[getattr(bn, s)] is n:
                reductions[s] = new.call_function(reduce_site, (env[n],))
    return reductions


def build_segment(module: nn.Module, bn: BlockNodes, mode: str, outputs: str = "sites",
                  channels: int | None = None) -> Segment:
    """The part of ``module``'s graph that an edit of block ``bn`` changes, as a runnable :class:`Segment`.

    ``mode`` is ``gain``, ``shortcut`` or ``sum`` (module docstring); ``outputs`` is ``sites``
    (the block's :data:`READ_SITES`, reduced) or ``logits`` (the model's output).
    ``channels`` is the block's channel count (the edit's width).

    Example:
        >>> seg = build_segment(model, block_nodes(model)[3], "gain", "sites", 128)  # doctest: +SKIP
        >>> head = build_head(model, seg.frontier)  # doctest: +SKIP
    """
    if mode not in MODES or outputs not in ("sites", "logits"):
        raise ValueError(f"mode must be one of {MODES} and outputs 'sites' or 'logits', got {mode!r}, {outputs!r}")
    traced = trace(module)
    nodes = list(traced.gm.graph.nodes)
    by_name = {n.name: n for n in nodes}
    root, changed = _edited(bn, by_name, mode)
    sites, targets = _read_out(bn, nodes, by_name, outputs)
    needed = _ancestors_or_self(targets)
    seg = [n for n in nodes if n in changed and n in needed]
    frontier = _frontier(seg, targets)
    if mode == "gain" and root not in frontier:
        raise InterventionError("the gain op's output does not reach the block's sites")
    frontier.sort(key=nodes.index)
    edit, point, holder = _edit_modules(mode, channels)
    new = fx.Graph()
    env, skip_edit = _inputs(new, frontier, mode, root, by_name[bn.skip_out])
    reductions = _copy_segment(new, env, seg, bn, by_name, sites, skip_edit, point is not None)
    if outputs == "logits":
        new.output(env[targets[0]])
    else:
        new.output(tuple(reductions[s] for s in sites))
    new.lint()
    gm = _graph_module(traced.gm, new, holder)  # the segment's own modules live beside the traced model's
    pointwise = outputs == "sites" and all(_is_pointwise(traced.gm, n) for n in seg)
    return Segment(gm, tuple(n.name for n in frontier), sites, edit, point, mode, pointwise)


def _is_pointwise(root: fx.GraphModule, node: fx.Node) -> bool:
    for a in node.all_input_nodes:  # a constant with a spatial extent (not per channel) mixes positions' roles
        if a.op == "get_attr":
            t = _get_attr(root, str(a.target))
            if getattr(t, "dim", lambda: 0)() >= 2 and (t.shape[-1] > 1 or t.shape[-2] > 1):
                return False
    if node.op == "call_module":
        return isinstance(root.get_submodule(str(node.target)), _POINTWISE_MODULES)
    if node.op in ("call_function", "call_method"):
        name = getattr(node.target, "__name__", str(node.target))
        return name in _POINTWISE_FUNCTIONS
    return False


def _graph_module(root: fx.GraphModule, graph: fx.Graph, extra: nn.Module) -> fx.GraphModule:
    """A GraphModule over ``graph`` whose targets resolve in ``root`` (the traced model) or ``extra`` (edits)."""
    targets = {n.target for n in graph.nodes if n.op in ("call_module", "get_attr")}
    owner = nn.Module()
    for t in targets:
        src = extra if t.startswith("_rs_") else root
        obj = src.get_submodule(t) if any(n.op == "call_module" and n.target == t for n in graph.nodes) else \
            _get_attr(src, t)
        _set_path(owner, t, obj)
    return fx.GraphModule(owner, graph)


def _get_attr(obj, target: str):
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(owner: nn.Module, target: str, obj) -> None:
    *path, last = target.split(".")
    mod = owner
    for p in path:
        if not hasattr(mod, p):
            mod.add_module(p, nn.Module())
        mod = getattr(mod, p)
    if isinstance(obj, nn.Module):
        mod.add_module(last, obj)
    elif isinstance(obj, nn.Parameter):
        mod.register_parameter(last, obj)
    else:
        mod.register_buffer(last, obj)


def build_head(module: nn.Module, names) -> fx.GraphModule:
    """The unmodified model from its input to the nodes ``names``: returns a tuple of their values (copies).

    The graph is cut after the last of them, so it costs no more than the forward up to there.

    Example:
        >>> head = build_head(model, ("bn2", "relu"))  # doctest: +SKIP
        >>> bn2_out, block_in = head(x)  # doctest: +SKIP
    """
    traced = trace(module)
    nodes = list(traced.gm.graph.nodes)
    wanted = set(names)
    missing = wanted - {n.name for n in nodes}
    if missing:
        raise InterventionError(f"nodes {sorted(missing)} are not in the traced graph")
    last = max(i for i, n in enumerate(nodes) if n.name in wanted)
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    clones: dict[str, fx.Node] = {}
    for n in nodes[:last + 1]:
        env[n] = new.node_copy(n, lambda a: env[a])
        if n.name in wanted:  # a copy at once: later in-place ops (out += identity) would change the value
            clones[n.name] = new.call_method("clone", (env[n],))
    new.output(tuple(clones[name] for name in names))
    return fx.GraphModule(traced.gm, new)
