"""Re-run the changed part of an ONNX graph with edited initializers (onnxruntime).

The ONNX twin of :mod:`~resstream_assert.interventions.segment_torch`. On an in-memory copy
of the graph (the user's file is never written):

* :func:`head_outputs` exposes the frontier tensors of the unmodified graph as outputs;
* :func:`build_onnx_segment` keeps only the nodes an edit changes, from the frontier to
  the read-out (the block's site maps, or the logits), and turns the edited constants into
  *overridable initializers* (initializers that are also graph inputs): each run feeds
  the edited values, so one session serves every factor and channel.

Edits: ``gain`` rewrites the branch's last affine op: a BatchNormalization's scale (and
bias), a layer scale's ``Mul`` constant, or, in a graph whose BN was folded, the fused
Conv's weight and bias (only "beta scaled" is expressible then: beta is inside the fused
bias). ``shortcut`` inserts ``Mul(skip, scale)`` on the residual Add's shortcut input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resstream_assert.discovery.onnx_graph import OnnxGraph, gain_op
from resstream_assert.discovery.residual_map import Block
from resstream_assert.errors import InterventionError

READ_SITES = ("skip_out", "branch_out", "resid_sum", "resid_post")
# Ops acting per position and channel: a segment of only these may run on the frontier's center pixels.
_POINTWISE = {"BatchNormalization", "Add", "Mul", "Sub", "Div", "Relu", "LeakyRelu", "Elu", "Gelu", "Sigmoid", "Clip",
              "Identity", "Dropout", "Selu", "Celu", "HardSwish", "Softplus", "Tanh", "Erf", "Cast"}


@dataclass
class OnnxSegment:
    """A session over the changed part; ``frontier`` tensors in, ``outputs`` out (site maps or logits).

    ``sites`` maps each read-out site to ``("out", tensor)`` (a segment output) or
    ``("in", tensor)`` (unchanged: a frontier input). ``params`` maps each overridable
    initializer to its original value; ``kind`` is the gain op's kind (``bn``,
    ``layer_scale``, ``fused_conv_proxy``) or ``shortcut``.
    """

    session: Any  # an onnxruntime.InferenceSession (onnxruntime ships no type information)
    frontier: tuple[str, ...]
    outputs: tuple[str, ...]
    sites: dict[str, tuple[str, str]]
    params: dict[str, np.ndarray]
    kind: str
    channels: int
    roles: dict[str, str] = field(default_factory=dict)  # param name -> scale | bias | weight | skip_scale
    pointwise: bool = False  # every op per position and channel: may run on center pixels (segment_torch)

    def feeds(self, factor: np.ndarray, beta: str = "scaled") -> dict[str, np.ndarray]:
        """The edited initializers for per-channel ``factor`` (C,): gamma (or W) x factor; beta scaled or held.

        Example:
            >>> seg.feeds(np.full(64, 0.5), beta="held")  # doctest: +SKIP
        """
        factor = np.asarray(factor, np.float64)
        if beta == "held" and self.kind == "fused_conv_proxy":
            raise InterventionError("BN is folded into the Conv: beta is inside the fused bias, so gamma cannot be "
                                    "scaled with beta held; export with BN kept (resstream export, default)")
        out = {}
        for name, value in self.params.items():
            role = self.roles[name]
            if role == "bias" and beta == "held":
                out[name] = value
                continue
            out[name] = (value * _along(factor, value.shape, self.channels, 0 if role == "weight" else None)
                         ).astype(value.dtype)
        return out


def _along(factor: np.ndarray, shape: tuple[int, ...], channels: int, axis: int | None) -> np.ndarray:
    """``factor`` reshaped to broadcast along the axis of ``shape`` that holds the channels."""
    if axis is None:
        axis = next((i for i, s in enumerate(shape) if s == channels), None)
    if axis is None or shape[axis] != channels:
        raise InterventionError(f"a constant of shape {shape} has no axis of {channels} channels to scale")
    view = [1] * len(shape)
    view[axis] = channels
    return factor.reshape(view)


def _descendant_nodes(g: OnnxGraph, start_nodes) -> list:
    seen, todo = {id(n): n for n in start_nodes}, list(start_nodes)
    while todo:
        n = todo.pop()
        for o in n.output:
            for u in g.consumers.get(o, []):
                if id(u) not in seen:
                    seen[id(u)] = u
                    todo.append(u)
    return list(seen.values())


@dataclass
class _Edit:
    """What an edit does to the graph: the overridable initializers it adds (``params``, with their
    ``roles``), the inputs it renames per node (node id -> {old input: new input}), the nodes it
    inserts, the tensor the residual Add reads as its shortcut, and the nodes whose value changes."""

    kind: str
    params: dict[str, np.ndarray]
    roles: dict[str, str]
    rename: dict[int, dict[str, str]]
    extra_nodes: list[Any]
    skip_value: str
    changed: list[Any]


def _gain_edit(g: OnnxGraph, block: Block) -> _Edit:
    """``gain``: the branch's last affine op reads its scale (and bias), or the fused Conv its weight (and
    bias), from overridable initializers.

    Example:
        >>> _gain_edit(OnnxGraph(model), rmap[3]).kind  # doctest: +SKIP
        'bn'
    """
    kind, found = gain_op(g, block.sites["branch_out"])
    if found is None:
        raise InterventionError(f"block {block.name}: the branch ends in no BatchNormalization, layer-scale Mul or "
                                "fused Conv whose gain could be scaled")
    node: Any = found  # an onnx NodeProto
    if kind == "bn":
        slots = {1: "scale", 2: "bias"}
    elif kind == "layer_scale":
        slots = {next(i for i, x in enumerate(node.input) if x not in g.anc): "scale"}
    else:
        slots = {1: "weight", **({2: "bias"} if len(node.input) > 2 and node.input[2] else {})}
    params: dict[str, np.ndarray] = {}
    roles: dict[str, str] = {}
    rename: dict[int, dict[str, str]] = {id(node): {}}
    for slot, role in slots.items():
        value = g.const(node.input[slot])
        if value is None:
            raise InterventionError(f"block {block.name}: the gain op's {role} is not a constant")
        new = f"_rs_{role}"
        params[new], roles[new] = np.asarray(value), role
        rename[id(node)][node.input[slot]] = new
    return _Edit(kind, params, roles, rename, [], block.sites["skip_out"], _descendant_nodes(g, [node]))


def _shortcut_edit(g: OnnxGraph, block: Block) -> _Edit:
    """``shortcut``: a ``Mul(skip, scale)`` inserted on the residual Add's shortcut input, ``scale`` overridable.

    Example:
        >>> _shortcut_edit(OnnxGraph(model), rmap[3]).skip_value  # doctest: +SKIP
        '_rs_skip_scaled'
    """
    from onnx import helper

    sites = block.sites
    add = g.producer[sites["resid_sum"]]
    skip_value = "_rs_skip_scaled"
    mul = helper.make_node("Mul", [sites["skip_out"], "_rs_skip_scale"], [skip_value], name="_rs_skip_mul")
    return _Edit("shortcut", {"_rs_skip_scale": np.ones((1, block.channels, 1, 1), np.float32)},
                 {"_rs_skip_scale": "skip_scale"}, {id(add): {sites["skip_out"]: skip_value}}, [mul], skip_value,
                 _descendant_nodes(g, [add]))


def _read_out(model, block: Block, skip_value: str, outputs: str) -> tuple[tuple[str, ...], list[str]]:
    """The sites read out and their tensors: the block's :data:`READ_SITES` (the shortcut as the Add
    reads it), or none and the graph's first output (``logits``).

    Example:
        >>> _read_out(model, rmap[3], "_rs_skip_scaled", "sites")[1][0]  # doctest: +SKIP
        '_rs_skip_scaled'
    """
    if outputs == "logits":
        return (), [model.graph.output[0].name]
    return READ_SITES, [skip_value if s == "skip_out" else block.sites[s] for s in READ_SITES]


def _needed(g: OnnxGraph, changed: list[Any], targets: list[str]) -> list[Any]:
    """The changed nodes that some read-out tensor depends on, in graph order."""
    mask = 0
    for t in targets:
        if t in g.vid:
            mask |= g.anc[t] | (1 << g.vid[t])
    keep = {id(n) for n in changed if any(o in g.vid and mask >> g.vid[o] & 1 for o in n.output)}
    return [n for n in g.nodes if id(n) in keep]


def _sources(g: OnnxGraph, block: Block, seg: list[Any], edit: _Edit,
             targets: list[str]) -> tuple[list[str], dict[str, Any], list[Any], set[str]]:
    """Where each tensor the segment reads comes from: ``(frontier, initializers, added nodes, produced)``.

    A tensor is a frontier input (a data value of the unmodified graph), an initializer, or a constant
    computed by nodes (``Constant``, ``Shape`` of a frontier tensor, ...), which are added to the segment.
    """
    produced = {o for n in seg + edit.extra_nodes for o in n.output}
    frontier: list[str] = []
    inits: dict[str, Any] = {}
    todo = [edit.rename.get(id(n), {}).get(i, i) for n in seg + edit.extra_nodes for i in n.input]
    todo += [t for t in targets if t not in produced]
    added: list[Any] = []
    while todo:
        name = todo.pop()
        if not name or name in produced or name in frontier or name in inits or name in edit.params:
            continue
        if name in g.inits:
            inits[name] = g.inits[name]
        elif name in g.anc or name == g.input_name:
            frontier.append(name)
        elif name in g.producer:  # a constant computed by nodes (Constant, Shape of a frontier tensor, ...)
            p = g.producer[name]
            added.append(p)
            produced.update(p.output)
            todo.extend(p.input)
        else:
            raise InterventionError(f"tensor {name!r} needed by the segment of block {block.name} has no source")
    return frontier, inits, added, produced


def _ordered_nodes(g: OnnxGraph, nodes: list[Any], edit: _Edit, add: Any) -> list[Any]:
    """``nodes`` in graph order with the edit's renamed inputs, and its inserted nodes before the residual Add."""
    from onnx import helper

    order = {id(n): i for i, n in enumerate(g.nodes)}
    out_nodes = []
    for n in sorted(nodes, key=lambda n: order[id(n)]):
        if id(n) in edit.rename:
            m = helper.make_node(n.op_type, [edit.rename[id(n)].get(i, i) for i in n.input], list(n.output),
                                 name=n.name, domain=n.domain)
            m.attribute.extend(n.attribute)
            n = m
        out_nodes.append(n)
    if edit.extra_nodes:  # the Mul must precede the Add that reads it
        pos = next(i for i, n in enumerate(out_nodes) if n.output[0] == add.output[0])
        out_nodes[pos:pos] = edit.extra_nodes
    return out_nodes


def _segment_model(model, name: str, out_nodes: list[Any], frontier: list[str], params: dict[str, np.ndarray],
                   inits: dict[str, Any], outs: list[str], types: dict[str, int]):
    """The segment as an ONNX model: frontier tensors and the overridable initializers in, ``outs`` out."""
    from onnx import TensorProto, helper, numpy_helper

    elem = lambda name: types.get(name, TensorProto.FLOAT)  # noqa: E731
    graph = helper.make_graph(
        out_nodes, name,
        [helper.make_tensor_value_info(f, elem(f), None) for f in frontier]
        + [helper.make_tensor_value_info(p, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for p, v in params.items()],
        [helper.make_empty_tensor_value_info(t) for t in outs],
        initializer=list(inits.values()) + [numpy_helper.from_array(v, p) for p, v in params.items()])
    return helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 4))


def _pointwise(out_nodes: list[Any], inits: dict[str, Any], params: dict[str, np.ndarray]) -> bool:
    """Every op acts per position and channel, and no constant an arithmetic op reads has a spatial extent."""
    from onnx import numpy_helper

    consts = {**{k: numpy_helper.to_array(v) for k, v in inits.items()}, **params}
    arith = {i for n in out_nodes if n.op_type in ("Add", "Mul", "Sub", "Div") for i in n.input}
    spatial = any(v.ndim >= 2 and (v.shape[-1] > 1 or v.shape[-2] > 1) for k, v in consts.items() if k in arith)
    return not spatial and all(n.op_type in _POINTWISE for n in out_nodes)


def build_onnx_segment(model, g: OnnxGraph, block: Block, mode: str, outputs: str = "sites", providers=(),
                       types: dict[str, int] | None = None) -> OnnxSegment:
    """The part of the graph that an edit of ``block`` changes, as an onnxruntime session.

    ``block`` is a :class:`~resstream_assert.discovery.residual_map.Block` of the ONNX map
    (its sites are tensor names); ``mode`` is ``gain`` or ``shortcut``; ``outputs`` is
    ``sites`` (the maps of :data:`READ_SITES`) or ``logits`` (the graph's first output).

    Example:
        >>> seg = build_onnx_segment(model, OnnxGraph(model), rmap[3], "gain")  # doctest: +SKIP
        >>> seg.session.run(None, {**frontier_values, **seg.feeds(np.full(128, 0.5))})  # doctest: +SKIP
    """
    if mode not in ("gain", "shortcut") or outputs not in ("sites", "logits"):
        raise ValueError(f"mode must be 'gain' or 'shortcut' and outputs 'sites' or 'logits', got {mode!r}, {outputs!r}")
    edit = _gain_edit(g, block) if mode == "gain" else _shortcut_edit(g, block)
    read, targets = _read_out(model, block, edit.skip_value, outputs)
    seg = _needed(g, edit.changed, targets)
    frontier, inits, added, produced = _sources(g, block, seg, edit, targets)
    out_nodes = _ordered_nodes(g, seg + added, edit, g.producer[block.sites["resid_sum"]])
    outs = [t for t in targets if t in produced]  # the others are unchanged frontier values
    where = {site: ("out" if t in produced else "in", t) for site, t in zip(read, targets)}
    seg_model = _segment_model(model, f"segment_{block.name}_{mode}", out_nodes, frontier, edit.params, inits, outs,
                               types or {})
    from resstream_assert.loading.ort_session import new_session, resolve_providers

    names, explicit = resolve_providers(providers)
    session = new_session(seg_model.SerializeToString(), names, explicit, f"<segment of {block.name}>")
    pointwise = outputs == "sites" and _pointwise(out_nodes, inits, edit.params)
    return OnnxSegment(session, tuple(frontier), tuple(outs), where, edit.params, edit.kind, block.channels,
                       edit.roles, pointwise)


def head_session(model, tensors, providers=(), key: tuple | None = None):
    """A session over a copy of ``model`` whose outputs are the original ones plus ``tensors`` (the frontier).

    Example:
        >>> sess = head_session(model, ["/layer2/layer2.0/relu_1/Relu_output_0"])  # doctest: +SKIP
    """
    from onnx import helper

    from resstream_assert.loading.ort_session import cached, new_session, remember, resolve_providers

    names, explicit = resolve_providers(providers)
    if key is not None:
        hit = cached((*key, names, "head", tuple(tensors)))
        if hit is not None:
            return hit
    inst = type(model)()
    inst.CopyFrom(model)
    existing = {o.name for o in inst.graph.output}
    for t in tensors:
        if t not in existing:
            inst.graph.output.append(helper.make_empty_tensor_value_info(t))
    sess = new_session(inst.SerializeToString(), names, explicit, "<frontier head>")
    return remember((*key, names, "head", tuple(tensors)), sess) if key is not None else sess


def elem_types(model) -> dict[str, int]:
    """Element type of every value shape inference knows (frontier inputs need one)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph shape inference cannot read still runs in onnxruntime
        return {}
    vis = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: v.type.tensor_type.elem_type for v in vis if v.type.tensor_type.elem_type}


def reduce_maps(fmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Center unit ``[H//2, W//2]`` and spatial mean per channel of an NCHW array (float32)."""
    if fmap.ndim != 4:
        raise InterventionError(f"a site produced a {fmap.ndim}-D tensor; expected NCHW")
    h, w = fmap.shape[2:]
    return fmap[:, :, h // 2, w // 2].astype(np.float32), fmap.mean(axis=(2, 3), dtype=np.float32)
