"""X1/X2: scale a block's branch gain (or its shortcut) per channel and recapture the block's sites.

What the claims ask: how ``M_c`` moves when the gain of channel ``c``'s branch (the last
affine op: BN gamma, or the layer scale) is scaled by ``f``, with beta held or scaled along
(X1), and when the shortcut summand of channel ``c`` is scaled instead (X2).

How it runs: ``M_c`` reads only channel ``c`` of the block's own sites, and scaling the gain
of channel ``c`` changes only channel ``c`` there (the add and the activation act per
channel). So one pass edits *every* channel of the block at once with the same factor, and
the factors (x variants) are stacked as groups along the batch axis. And nothing upstream
of the edit changes, so the model runs once to the frontier (the gain op's output and the
shortcut, see :mod:`~resstream_assert.interventions.segment_torch`), and only the changed
part of the block runs again, for all groups. Torch edits activations (``f * y + (1 - f) *
beta`` is BN with gamma x f); ONNX edits the initializers of a copy of the graph (the BN's
scale and bias, a layer scale's constant, or a folded Conv's weight and bias) and runs each
factor with the edited values fed in.

The result holds, per block and sampled channel, the recaptured center units (float32)
of the sites that change; the claims compute ``M_c`` from them with the unmodified model's
exemplars (``measures.block_measures(..., exemplars=...)``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from resstream_assert.errors import InterventionError
from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions.settings import InterventionOptions, model_unchanged, plans_digest
from resstream_assert.interventions.runners import OnnxRunner, TorchRunner

#: Sites recaptured per edit (the others do not change): gain edits / shortcut edits.
GAIN_SITES = ("branch_out", "resid_sum", "resid_post")
SHORTCUT_SITES = ("skip_out", "resid_sum", "resid_post")


@dataclass(frozen=True)
class BlockScaling:
    """One block's recaptured sites under each edit: ``(K factors, N images, len(channels))`` float32 arrays.

    ``gain[variant][site]`` (variants ``held``/``scaled``) and ``shortcut[site]``; ``notes``
    says why an edit is missing (e.g. ``{"held": "BN is folded into the Conv ..."}``).
    """

    block: str
    index: int
    channels: np.ndarray
    gain_kind: str
    gain: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    shortcut: Mapping[str, np.ndarray] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScalingData:
    """X1/X2 data (numpy only): the factors, the images used (the first ``n_images``) and every block."""

    factors: tuple[float, ...]
    variants: tuple[str, ...]
    n_images: int
    blocks: tuple[BlockScaling, ...]
    backend: str
    seconds: float = 0.0
    status: str = "ok"
    reason: str = ""


@dataclass(frozen=True)
class ScalingRequest:
    """Scale gains (all variants) and shortcuts by every factor in the given blocks; keep ``channels`` of each.

    X1 and X2 build the same request (same key), so the pipeline runs it once for both.

    Example:
        >>> req = ScalingRequest(InterventionOptions(), ((3, np.arange(64)),))  # doctest: +SKIP
        >>> data = req.run(env)  # doctest: +SKIP
        >>> data.blocks[0].gain["held"]["resid_post"].shape  # doctest: +SKIP
        (7, 512, 64)
    """

    options: InterventionOptions
    plans: tuple[tuple[int, np.ndarray], ...]

    @property
    def key(self) -> tuple:
        o = self.options
        return ("scaling", tuple(map(float, o.factors)), tuple(o.variants), o.images, o.batch_size, plans_digest(self.plans))

    def run(self, env: InterventionEnv) -> ScalingData:
        return run_scaling(env, self)


def _groups(opts: InterventionOptions) -> list[tuple[str, str, int]]:
    """The edit groups of one pass: (mode, variant, factor index); gain variants first, then the shortcut."""
    k = len(opts.factors)
    return [("gain", v, i) for v in opts.variants for i in range(k)] + [("shortcut", "", i) for i in range(k)]


def run_scaling(env: InterventionEnv, request: ScalingRequest) -> ScalingData:
    """Run every gain and shortcut edit of ``request`` (torch or onnxruntime) and return the recaptured sites.

    Example:
        >>> data = run_scaling(env, request)  # doctest: +SKIP
    """
    opts, loaded = request.options, env.loaded
    n = min(opts.images, len(env.probe))
    start = time.perf_counter()
    env.say(f"[resstream] X1/X2 gain and shortcut scaling: {len(request.plans)} blocks x {len(_groups(opts))} edits "
            f"x {n} images ({loaded.backend}) ...")
    with model_unchanged(loaded, "X1/X2 scaling"):
        runner = _TorchRunner(env, opts) if loaded.backend == "torch" else _OnnxRunner(env, opts)
        blocks = runner.run(request.plans, n)
    seconds = time.perf_counter() - start
    env.say(f"[resstream] X1/X2 scaling done in {seconds:.0f} s")
    return ScalingData(tuple(map(float, opts.factors)), tuple(opts.variants), n, tuple(blocks), loaded.backend, seconds)


def _center_pixel(v, spatial):
    """The center pixel ``[H//2, W//2]`` of an NCHW map of the block's size, kept 4-D; None if not such a map."""
    if getattr(v, "ndim", 0) != 4 or tuple(v.shape[2:]) != tuple(spatial or ()):
        return None
    h, w = v.shape[2] // 2, v.shape[3] // 2
    return v[:, :, h:h + 1, w:w + 1]


def _crop_all(values: list, spatial, pointwise: bool) -> list | None:
    """Center pixels of every frontier value when the segment is pointwise and all are block-sized maps."""
    if not pointwise:
        return None
    cropped = [_center_pixel(v, spatial) for v in values]
    return None if any(c is None for c in cropped) else cropped


def _assemble(block, chans, opts, got: dict, notes: dict) -> BlockScaling:
    """Stack per-group center arrays into (K, N, channels) per variant / site."""
    k = len(opts.factors)
    gain = {v: {s: np.stack([got[("gain", v, i)][s] for i in range(k)]) for s in GAIN_SITES}
            for v in opts.variants if ("gain", v, 0) in got}
    short = {s: np.stack([got[("shortcut", "", i)][s] for i in range(k)]) for s in SHORTCUT_SITES} \
        if ("shortcut", "", 0) in got else {}
    return BlockScaling(block.name, block.index, np.asarray(chans), block.gain_kind, gain, short, notes)


class _TorchRunner(TorchRunner):
    """Torch: one head pass per image chunk for the block, then every edit group stacked through the segment."""

    def _prepare(self, index: int, chans: np.ndarray) -> dict:
        from resstream_assert.interventions.segment_torch import build_segment

        torch, block, bn = self.torch, self.env.rmap[index], self.nodes[index]
        notes: dict[str, str] = {}
        segs = {}
        for mode in ("gain", "shortcut"):
            try:
                segs[mode] = build_segment(self.module, bn, mode, "sites", block.channels)
            except InterventionError as exc:
                notes[mode] = str(exc)
        beta = torch.zeros(block.channels, device=self.dev)
        if bn.gain_module is not None:
            bias = self.module.get_submodule(bn.gain_module).bias
            beta = bias.detach().to(self.dev, torch.float32) if bias is not None else beta
        elif "gain" in segs:
            notes["held"] = f"a {block.gain_kind} has no beta: held and scaled are the same edit"
        return {"block": block, "chans": chans, "segs": segs, "notes": notes, "beta": beta,
                "groups": [g for g in _groups(self.opts) if g[0] in segs], "parts": {}}

    def run(self, plans, n: int) -> list[BlockScaling]:
        from resstream_assert.interventions.segment_torch import build_head

        torch = self.torch
        prepared = [self._prepare(index, chans) for index, chans in plans]
        frontier = list(dict.fromkeys(name for p in prepared for s in p["segs"].values() for name in s.frontier))
        head = build_head(self.module, frontier) if frontier else None
        factors = torch.tensor(self.opts.factors, dtype=torch.float32, device=self.dev)
        images = self.env.probe.images[:n]
        with torch.inference_mode():
            for i in range(0, n if head is not None else 0, 64):  # one pass to every block's frontier
                assert head is not None  # the range is empty without a frontier
                x = self.inputs(images[i:i + 64])
                values = dict(zip(frontier, head(x)))
                for p in prepared:
                    self._edits(p, values, factors)
        return [_assemble(p["block"], p["chans"], self.opts, _concat(p["parts"], p["groups"]), p["notes"])
                for p in prepared]

    def _edits(self, p: dict, values: dict, factors) -> None:
        """Every edit group of one block on one chunk of frontier values (stacked, in sub-chunks)."""
        torch, block = self.torch, p["block"]
        chan_idx = torch.as_tensor(p["chans"], device=self.dev)
        for mode, seg in p["segs"].items():
            mine = [g for g in p["groups"] if g[0] == mode]
            f = factors[[g[2] for g in mine]][:, None].expand(len(mine), block.channels).contiguous()
            off = None
            if mode == "gain":
                held = torch.tensor([g[1] == "held" for g in mine], device=self.dev)[:, None]
                off = torch.where(held, (1 - f) * p["beta"][None], torch.zeros_like(f))
            vals = [values[name] for name in seg.frontier]
            crop = _crop_all(vals, block.spatial, seg.pointwise)
            vals = crop if crop is not None else vals
            step = len(vals[0]) if crop is not None else max(1, self.opts.batch_size // max(1, len(mine)))
            for j in range(0, len(vals[0]), step):
                red = seg.run([v[j:j + step] for v in vals], f, off)
                for s, (center, _) in zip(seg.sites, red):
                    c = center.reshape(len(mine), -1, block.channels)[:, :, chan_idx].float().cpu().numpy()
                    for gi, g in enumerate(mine):
                        p["parts"].setdefault((g, s), []).append(c[gi])


def _concat(parts: dict, groups) -> dict:
    out: dict = {g: {} for g in groups}
    for (g, s), chunks in parts.items():
        out[g][s] = np.concatenate(chunks)
    return out


class _OnnxRunner(OnnxRunner):
    """onnxruntime: a head session exposing the frontier, then one segment session per block and edit mode."""

    def _prepare(self, index: int, chans: np.ndarray) -> dict:
        from resstream_assert.interventions.segment_onnx import build_onnx_segment

        block = self.env.rmap[index]
        notes: dict[str, str] = {}
        segs = {}
        for mode in ("gain", "shortcut"):
            try:
                segs[mode] = build_onnx_segment(self.model, self.graph, block, mode, "sites", self.providers,
                                                self.types)
            except InterventionError as exc:
                notes[mode] = str(exc)
        groups = []
        for g in _groups(self.opts):
            if g[0] not in segs:
                continue
            if g[0] == "gain" and g[1] == "held" and segs["gain"].kind == "fused_conv_proxy":
                notes["held"] = ("BN is folded into the Conv: beta is inside the fused bias, so only gamma and beta "
                                 "scaled together is an edit of this graph; export with BN kept for 'held'")
                continue
            groups.append(g)
        if "gain" in segs and segs["gain"].kind == "layer_scale":
            notes["held"] = "a layer scale has no beta: held and scaled are the same edit"
        return {"block": block, "chans": chans, "segs": segs, "notes": notes, "groups": groups, "parts": {}}

    def run(self, plans, n: int) -> list[BlockScaling]:
        from resstream_assert.interventions.segment_onnx import head_session

        prepared = [self._prepare(index, chans) for index, chans in plans]
        frontier = list(dict.fromkeys(name for p in prepared for s in p["segs"].values() for name in s.frontier))
        head = head_session(self.model, frontier, self.providers, key=(self.env.loaded.digest,)) if frontier else None
        images = self.env.probe.images[:n]
        for i in range(0, n if head is not None else 0, 64):  # one pass to every block's frontier
            assert head is not None  # the range is empty without a frontier
            x = self.inputs(images[i:i + 64])
            values = dict(zip(frontier, head.run(frontier, {self.input_name: x})))
            for p in prepared:
                self._edits(p, values)
        return [_assemble(p["block"], p["chans"], self.opts, _concat(p["parts"], p["groups"]), p["notes"])
                for p in prepared]

    def _edits(self, p: dict, values: dict) -> None:
        """Every edit of one block on one chunk: one run per group, with the edited initializers fed in."""
        from resstream_assert.interventions.segment_onnx import reduce_maps

        block, chans = p["block"], p["chans"]
        for mode, seg in p["segs"].items():
            vals = [values[name] for name in seg.frontier]
            crop = _crop_all(vals, block.spatial, seg.pointwise)
            feeds0 = dict(zip(seg.frontier, crop if crop is not None else vals))
            for g in (g for g in p["groups"] if g[0] == mode):
                feeds = {**feeds0, **seg.feeds(np.full(block.channels, float(self.opts.factors[g[2]])),
                                               beta=g[1] or "scaled")}
                outs = dict(zip(seg.outputs, seg.session.run(list(seg.outputs), feeds)))
                for site in (GAIN_SITES if mode == "gain" else SHORTCUT_SITES):
                    where, tensor = seg.sites[site]
                    fmap = outs[tensor] if where == "out" else feeds0[tensor]
                    p["parts"].setdefault((g, site), []).append(reduce_maps(np.asarray(fmap))[0][:, chans])
