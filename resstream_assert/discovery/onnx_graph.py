"""Find residual blocks in an ONNX graph (torch exports, either exporter, BN folded or not).

Same rule as :mod:`resstream_assert.discovery.torch_graph`: a residual add is an ``Add``
whose two operands share an ancestor in the image's data flow; the latest shared value is
``resid_pre`` and the operand with fewer values in between is ``skip_out``. Data flow
ignores edges that carry only shapes or types (``Shape``, ``Size``, ``CastLike``'s type
input), so the dynamo exporter's bias plumbing does not create false ancestors, and
constants (initializers, ``Constant`` nodes) are never data, so bias adds are not blocks.

Names: block names are module paths recovered from TorchScript-exporter node names
(``/layer1/layer1.0/Add`` -> ``layer1.0``) or from the dynamo exporter's
``pkg.torch.onnx.name_scopes`` metadata, so they equal the torch backend's; elsewhere
``block{i}``. Site names are the ONNX tensor names.

Gains: a ``BatchNormalization`` ends the branch -> ``|scale|`` ("bn"); a ``Mul`` by a
per-channel constant -> the layer scale ("layer_scale"); a ``Conv`` in a graph whose BN was
folded (detected, never assumed) -> the per-output-channel L2 norm of the fused weight
("fused_conv_proxy", flagged as a proxy everywhere it is used). ``conv_magnitude`` is read
from the weights in the file, i.e. the *fused* weights when BN was folded.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resstream_assert.discovery.residual_map import Block, ResidualMap
from resstream_assert.errors import DiscoveryError
from resstream_assert.loading.onnx_file import bn_folded

# Inputs that carry only a shape or a type, never values: not data-flow edges.
_META_ONLY = {"Shape": (), "Size": (), "CastLike": (0,), "EyeLike": ()}
_TRANSPARENT = {"Identity", "Dropout"}
_ACTIVATIONS = {"Relu", "LeakyRelu", "Elu", "Gelu", "Clip", "Selu", "Celu", "Mish", "HardSwish", "Softplus"}
_LINEAR_OPS = {"Conv", "MatMul", "Gemm"}

if TYPE_CHECKING:  # onnx is imported where it is used: importing the package does not load it
    from onnx import NodeProto


class OnnxGraph:
    """An indexed ONNX graph: producers, data consumers, constants and data-flow ancestry.

    Example:
        >>> g = OnnxGraph(onnx.load("resnet18.onnx"))  # doctest: +SKIP
        >>> g.input_name  # doctest: +SKIP
        'input'
    """

    def __init__(self, model):
        self.model = model
        graph = model.graph
        self.inits = {t.name: t for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.inits]
        if not inputs:
            raise DiscoveryError("the ONNX graph has no (non-initializer) input")
        self.input_name = inputs[0].name
        self.nodes = _toposort(graph.node, set(self.inits) | {i.name for i in graph.input})
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self._const_cache: dict[str, np.ndarray | None] = {}
        # Data values in production order; ancestry as bitmasks over their indices.
        self.vid: dict[str, int] = {self.input_name: 0}
        self.anc: dict[str, int] = {self.input_name: 0}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.nodes:
            ins = self.data_inputs(node)
            for i in ins:
                self.consumers[i].append(node)
            if not ins:
                continue
            mask = 0
            for i in ins:
                mask |= self.anc[i] | (1 << self.vid[i])
            for o in node.output:
                if o:
                    self.vid[o] = len(self.vid)
                    self.anc[o] = mask
        self.values = list(self.vid)  # index -> name (dicts keep insertion order = production order)
        self.folded = bn_folded(model)

    def data_inputs(self, node) -> list[str]:
        """The inputs of ``node`` that carry image-derived values."""
        keep = _META_ONLY.get(node.op_type)
        names = node.input if keep is None else [node.input[k] for k in keep if k < len(node.input)]
        return [i for i in names if i and i in self.anc]

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor (initializer, Constant, or a fold of Identity/Transpose/Cast/
        Reshape/Squeeze/Unsqueeze over constants), else ``None``."""
        if name in self._const_cache:
            return self._const_cache[name]
        from onnx import numpy_helper

        value = None
        if name in self.inits:
            value = numpy_helper.to_array(self.inits[name])
        elif name in self.producer and name not in self.anc:
            node = self.producer[name]
            args = [self.const(i) if i else None for i in node.input]
            attrs = {a.name: a for a in node.attribute}
            try:
                value = _fold(node, args, attrs)
            except (ValueError, IndexError, TypeError):
                value = None
        self._const_cache[name] = value
        return value

    def module_path(self, node) -> str:
        """The torch module path behind ``node`` (``''`` when the exporter left none)."""
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = ast.literal_eval(prop.value)
                except (ValueError, SyntaxError):
                    break
                mods = [s for s in scopes[:-1] if s and not s.startswith("_")]
                return mods[-1] if mods else ""
        if node.name.startswith("/"):
            # TorchScript scopes: '/layer1/layer1.0/bn2/BatchNormalization'. A Sequential child appears
            # as 'parent.idx', so a component extending the previous one replaces it.
            full: list[str] = []
            for part in node.name.split("/")[1:-1]:
                if full and part.startswith(full[-1] + "."):
                    full[-1] = part
                else:
                    full.append(part)
            return ".".join(full)
        return ""


def discover_onnx(loaded, input_size: int | None = None) -> ResidualMap:
    """Build the :class:`ResidualMap` of an ONNX model (a ``LoadedModel`` with ``onnx_path``, or a path).

    Example:
        >>> from resstream_assert import load_model
        >>> rmap = discover_onnx(load_model("resnet18.onnx"))  # doctest: +SKIP
        >>> rmap[2].name, rmap[2].sites["branch_out"]  # doctest: +SKIP
        ('layer2.0', '/layer2/layer2.0/bn2/BatchNormalization_output_0')
    """
    from resstream_assert.loading.onnx_file import image_input, read_model, value_shapes

    path = getattr(loaded, "onnx_path", None) or str(loaded)
    name = getattr(loaded, "name", Path(path).name)
    model, _ = read_model(path)
    dims = image_input(model, path)[0].type.tensor_type.shape.dim
    # A graph with fixed H and W can only be run (and shape-inferred) at that size.
    static = dims[2].dim_value if dims[2].HasField("dim_value") and dims[2].dim_value else None
    size = int(static or input_size or getattr(loaded, "input_size", 0) or 224)
    g = OnnxGraph(model)
    found = find_blocks(g)
    if not found:
        n_adds = sum(1 for n in g.nodes if n.op_type in ("Add", "Sum"))
        raise DiscoveryError(
            f"No residual block found in {name} ({path}): searched the graph's {n_adds} Add nodes for one of the "
            "form x + f(x) (both operands computed from a shared image-derived tensor; adds of constants such as "
            "biases do not count). Networks without skip connections have no residual stream to test; pick a "
            "residual network, or check that the export did not fuse the residual adds away.")
    shapes = value_shapes(model, g.input_name, [f["resid_sum"] for f in found], size)
    blocks = []
    for i, f in enumerate(found):
        shape = shapes.get(f["resid_sum"])
        if shape is None or len(shape) != 4:
            raise DiscoveryError(f"Residual add {f['add'].name!r} in {name} does not produce an NCHW feature map "
                                 f"(shape {shape} at {size}px); only convolutional residual streams are supported.")
        gain_kind, gain_source, gain, conv_source, conv = _gain_and_conv(g, f["branch_out"])
        block_name = g.module_path(f["add"])
        if not block_name:  # a top-level add (re-traced GraphModule): name it after the branch's module
            branch_mod = g.module_path(g.producer[f["branch_out"]]) if f["branch_out"] in g.producer else ""
            block_name = branch_mod.rsplit(".", 1)[0] if "." in branch_mod else f"block{i}"
        sites = {k: f[k] for k in ("resid_pre", "skip_out", "branch_out", "resid_sum", "resid_post")}
        blocks.append(Block(
            index=i, name=block_name, sites=sites, channels=int(shape[1]), spatial=(int(shape[2]), int(shape[3])),
            projection=_identity_root(g, sites["skip_out"]) != sites["resid_pre"],
            post_activation=sites["resid_post"] != sites["resid_sum"],
            gain_kind=gain_kind, gain_source=gain_source, conv_source=conv_source, branch_gain=gain,
            conv_magnitude=conv))
    return ResidualMap(name, size, tuple(blocks), "onnx")


def find_blocks(g: OnnxGraph) -> list[dict]:
    """Residual adds of ``g`` in forward order, as dicts of site -> tensor name (plus the ``add`` node)."""
    found = []
    for node in g.nodes:
        if node.op_type not in ("Add", "Sum") or len(node.input) != 2:
            continue
        a, b = node.input
        if a not in g.anc or b not in g.anc or node.output[0] not in g.anc:
            continue
        common = (g.anc[a] | (1 << g.vid[a])) & (g.anc[b] | (1 << g.vid[b]))
        if not common:
            continue
        pre_id = common.bit_length() - 1  # the latest shared value (ids follow production order)
        pre = g.values[pre_id]
        below = g.anc[pre] | (1 << pre_id)
        len_a = 0 if a == pre else bin((g.anc[a] | (1 << g.vid[a])) & ~below).count("1")
        len_b = 0 if b == pre else bin((g.anc[b] | (1 << g.vid[b])) & ~below).count("1")
        skip, branch = (a, b) if len_a < len_b else (b, a)
        if branch == pre:
            continue
        found.append({"add": node, "resid_pre": pre, "skip_out": skip, "branch_out": branch,
                      "resid_sum": node.output[0], "resid_post": _post(g, node.output[0])})
    return found


# --- helpers -----------------------------------------------------------------------------

def _identity_root(g: OnnxGraph, value: str) -> str:
    """The value behind a chain of Identity / Dropout nodes (an identity shortcut written as a module)."""
    for _ in range(8):
        node = g.producer.get(value)
        if node is None or node.op_type not in ("Identity", "Dropout") or not node.input:
            break
        value = node.input[0]
    return value


def _toposort(nodes, available: set[str]) -> list:
    """Nodes in an order where every input is produced first (exports are sorted; hand-edited files may not be)."""
    nodes = list(nodes)
    produced = set(available) | {""}
    for n in nodes:
        if not all(i in produced for i in n.input):
            break
        produced.update(n.output)
    else:
        return nodes
    produced = set(available) | {""}
    pending: list = nodes
    order: list = []
    while pending:
        ready = [n for n in pending if all(i in produced for i in n.input)]
        if not ready:  # inputs from nowhere (subgraph captures): keep the file's order for the rest
            return order + pending
        for n in ready:
            produced.update(n.output)
        order += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    return order


def _fold(node, args: list, attrs: dict) -> np.ndarray | None:
    from onnx import helper, numpy_helper

    op = node.op_type
    if op == "Constant":
        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"].t)
        for key in ("value_float", "value_floats", "value_int", "value_ints"):
            if key in attrs:
                return np.asarray(helper.get_attribute_value(attrs[key]))
        return None
    if not args or args[0] is None:
        return None
    x = args[0]
    if op == "Identity":
        return x
    if op == "Transpose":
        perm = list(attrs["perm"].ints) if "perm" in attrs else None
        return np.transpose(x, perm)
    if op == "Cast":
        return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"].i))
    if op == "Reshape" and len(args) > 1 and args[1] is not None:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(args[1].tolist())]
        return x.reshape(shape)
    if op in ("Squeeze", "Unsqueeze"):
        axes = args[1].tolist() if len(args) > 1 and args[1] is not None else list(attrs["axes"].ints) \
            if "axes" in attrs else None
        if op == "Squeeze":
            return np.squeeze(x, axis=tuple(axes) if axes else None)
        if axes is None:  # an Unsqueeze without axes: nothing to fold (const() reads None either way)
            return None
        for ax in sorted(a % (x.ndim + len(axes)) for a in axes):
            x = np.expand_dims(x, ax)
        return x
    return None


def _post(g: OnnxGraph, value: str) -> str:
    """The block's activation after the add, or the add itself when there is none (ConvNeXt)."""
    users = g.consumers.get(value, [])
    outputs = {o.name for o in g.model.graph.output}
    if value in outputs:
        return value
    if len(users) == 1 and users[0].op_type in _ACTIVATIONS:
        return users[0].output[0]
    if len(users) == 2:  # SiLU / swish: x * sigmoid(x)
        sig = next((u for u in users if u.op_type == "Sigmoid"), None)
        mul = next((u for u in users if u.op_type == "Mul"), None)
        if sig is not None and mul is not None and sig.output[0] in mul.input:
            return mul.output[0]
    return value


def _per_channel(values: np.ndarray | None) -> bool:
    if values is None or values.size < 2:
        return False
    return sum(1 for s in values.shape if s != 1) == 1


def gain_op(g: OnnxGraph, branch: str) -> tuple[str, NodeProto | None]:
    """The branch's last affine op ending at tensor ``branch``: ``(kind, node)``.

    ``kind`` is ``bn`` (a BatchNormalization with a constant scale), ``layer_scale`` (a
    ``Mul`` by a per-channel constant), ``fused_conv_proxy`` (a Conv in a graph whose BN was
    folded) or ``none`` (``node`` is then ``None``). Interventions edit this node's constants.

    Example:
        >>> kind, node = gain_op(OnnxGraph(model), rmap[3].sites["branch_out"])  # doctest: +SKIP
        >>> kind, node.op_type  # doctest: +SKIP
        ('bn', 'BatchNormalization')
    """
    node = g.producer.get(branch)
    for _ in range(8):
        if node is None:
            break
        if node.op_type in _TRANSPARENT and g.data_inputs(node):
            node = g.producer.get(g.data_inputs(node)[0])
            continue
        if node.op_type == "BatchNormalization" and g.const(node.input[1]) is not None:
            return "bn", node
        if node.op_type == "Mul" and len(g.data_inputs(node)) == 1:
            other = next(i for i in node.input if i not in g.anc)
            if _per_channel(g.const(other)):
                return "layer_scale", node
        if node.op_type == "Conv" and g.folded and g.const(node.input[1]) is not None:
            return "fused_conv_proxy", node
        break
    return "none", None


def _gain_and_conv(g: OnnxGraph, branch: str):
    """(gain_kind, gain_source, gain, conv_source, conv_magnitude) of the branch ending at ``branch``."""
    kind, node = gain_op(g, branch)
    source, gain, start = None, None, branch
    if kind == "bn":
        assert node is not None  # gain_op pairs every kind but "none" with its node
        source, gain, start = g.module_path(node) or node.name, np.abs(_checked_const(g, node.input[1])).astype(
            np.float64).ravel(), node.input[0]
    elif kind == "layer_scale":
        assert node is not None
        other = next(i for i in node.input if i not in g.anc)
        gain, start = np.abs(_checked_const(g, other)).astype(np.float64).ravel(), g.data_inputs(node)[0]
        source = _param_name(g, node, other, "layer_scale")
    elif kind == "fused_conv_proxy":
        assert node is not None
        w = _checked_const(g, node.input[1])
        source = _conv_name(g, node)
        gain = np.sqrt((w.astype(np.float64) ** 2).reshape(w.shape[0], -1).sum(1))
    conv_source, conv = _conv_magnitude(g, start)
    return kind, source, gain, conv_source, conv


def _checked_const(g: OnnxGraph, name: str) -> np.ndarray:
    value = g.const(name)
    assert value is not None  # gain_op has already found this constant
    return value


def _conv_magnitude(g: OnnxGraph, value: str) -> tuple[str | None, np.ndarray | None]:
    """Mean |W| per output channel of the last Conv/MatMul/Gemm before ``value`` (single-input chain)."""
    node = g.producer.get(value)
    for _ in range(12):
        if node is None:
            return None, None
        if node.op_type in _LINEAR_OPS:
            w_name = next((i for i in node.input[:2] if i not in g.anc), None)
            w = g.const(w_name) if w_name else None
            if w is None or w.ndim < 2:
                return None, None
            w = np.abs(w.astype(np.float64))
            if node.op_type == "Conv":
                mag = w.reshape(w.shape[0], -1).mean(1)
            elif node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
                mag = w.mean(1)  # (out, in)
            else:
                mag = w.mean(0)  # MatMul / Gemm weights are (in, out)
            return _conv_name(g, node), mag
        ins = g.data_inputs(node)
        if len(ins) != 1:
            return None, None
        node = g.producer.get(ins[0])
    return None, None


def _clean_param(g: OnnxGraph, name: str) -> str | None:
    """A parameter name as torch spelled it; None for names the exporter generated."""
    # TorchScript de-duplicates equal initializers behind Identity nodes whose *outputs* keep the
    # torch names, so the name a node reads is already the right one; only generated names are dropped.
    if name.startswith(("onnx::", "val_", "/")) or name.isdigit():
        return None
    return name


def _param_name(g: OnnxGraph, node, init: str, suffix: str) -> str:
    mod = g.module_path(node)
    name = _clean_param(g, init)
    if name and (not mod or name.startswith(mod + ".")):
        return name
    return f"{mod}.{suffix}" if mod else (name or node.name)


def _conv_name(g: OnnxGraph, node) -> str:
    """The Conv's module path: from its weight's torch name, else its scope (dynamo fused convs carry BN's scope)."""
    weight = _clean_param(g, node.input[1]) if len(node.input) > 1 else None
    if weight and weight.endswith(".weight"):
        return weight[: -len(".weight")]
    return g.module_path(node) or node.name
