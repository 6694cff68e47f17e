"""X3: the model's output when one channel's branch gain is scaled (one edit per channel and factor).

Unlike X1, the read-out here is the logits, downstream of the block, where edits of
different channels mix: each (channel, factor) edit is its own forward of the part of the
network after the edit (the head runs once per image chunk to the frontier; see
:mod:`~resstream_assert.interventions.segment_torch`). Torch stacks several edits along the
batch axis per call; onnxruntime runs each edit with the edited BN initializers fed in.
Gamma is scaled with beta held. The claim turns the logits into a KL divergence from the
unmodified output and, where the probe's labels fit the model, an accuracy change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from resstream_assert.errors import InterventionError
from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions.lesion import label_problem
from resstream_assert.interventions.settings import InterventionOptions, model_unchanged, plans_digest
from resstream_assert.interventions.runners import OnnxRunner, TorchRunner


@dataclass(frozen=True)
class BlockDownstream:
    """One block: the edited channels and the logits ``(F factors, E channels, N images, K)`` (float32)."""

    block: str
    index: int
    channels: np.ndarray
    logits: np.ndarray | None = None
    note: str = ""


@dataclass(frozen=True)
class DownstreamData:
    """X3 data: the unmodified logits ``(N, K)``, labels (-1 = none), why accuracy is not scored, every block."""

    factors: tuple[float, ...]
    base_logits: np.ndarray
    labels: np.ndarray
    label_problem: str
    blocks: tuple[BlockDownstream, ...]
    backend: str
    seconds: float = 0.0


@dataclass(frozen=True)
class DownstreamRequest:
    """Scale the gain of each listed channel (alone) by each of ``options.x3_factors``; keep the logits.

    Example:
        >>> DownstreamRequest(InterventionOptions(), ((3, np.array([0, 5, 9])),)).run(env).blocks[0].logits.shape  # doctest: +SKIP
        (1, 3, 128, 10)
    """

    options: InterventionOptions
    plans: tuple[tuple[int, np.ndarray], ...]

    @property
    def key(self) -> tuple:
        o = self.options
        return ("downstream", tuple(map(float, o.x3_factors)), o.x3_images, o.batch_size, plans_digest(self.plans))

    def run(self, env: InterventionEnv) -> DownstreamData:
        return run_downstream(env, self)


def run_downstream(env: InterventionEnv, request: DownstreamRequest) -> DownstreamData:
    """Run every single-channel gain edit of ``request`` and return the logits.

    Example:
        >>> data = run_downstream(env, request)  # doctest: +SKIP
    """
    opts, loaded = request.options, env.loaded
    n = min(opts.x3_images, len(env.probe))
    edits = sum(len(c) for _, c in request.plans) * len(opts.x3_factors)
    env.say(f"[resstream] X3 downstream effect: {edits} single-channel gain edits x {n} images ({loaded.backend}) ...")
    start = time.perf_counter()
    with model_unchanged(loaded, "X3 gain edits"):
        runner = _Torch(env, opts) if loaded.backend == "torch" else _Onnx(env, opts)
        images = env.probe.images[:n]
        base = runner.base(images)
        blocks = []
        for i, (index, chans) in enumerate(request.plans):
            blocks.append(runner.block(index, np.asarray(chans), images))
            env.say(f"[resstream] X3 {blocks[-1].block}: {len(chans)} channels ({i + 1}/{len(request.plans)} blocks, "
                    f"{time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    env.say(f"[resstream] X3 downstream effect done in {seconds:.0f} s")
    labels = env.probe.labels[:n].copy()
    return DownstreamData(tuple(map(float, opts.x3_factors)), base, labels, label_problem(loaded, env.probe,
                          env.probe_source), tuple(blocks), loaded.backend, seconds)


def edit_rows(chans: np.ndarray, factors, channels: int) -> np.ndarray:
    """``(F * E, C)`` per-channel factors: row ``(f, e)`` scales channel ``chans[e]`` by ``factors[f]``, others 1.

    Example:
        >>> edit_rows(np.array([1, 2]), (0.5,), 3).tolist()
        [[1.0, 0.5, 1.0], [1.0, 1.0, 0.5]]
    """
    rows = np.ones((len(factors) * len(chans), channels))
    for i, f in enumerate(factors):
        rows[i * len(chans) + np.arange(len(chans)), chans] = f
    return rows


class _Torch(TorchRunner):
    """Torch: the plain logits once, then each block's gain edits stacked through its segment."""

    def base(self, images) -> np.ndarray:
        with self.torch.inference_mode():
            return np.concatenate([self.module(self.inputs(images[i:i + 64])).float().cpu().numpy()
                                   for i in range(0, len(images), 64)])

    def block(self, index: int, chans: np.ndarray, images) -> BlockDownstream:
        from resstream_assert.interventions.segment_torch import build_head, build_segment

        torch, block, bn = self.torch, self.env.rmap[index], self.nodes[index]
        try:
            seg = build_segment(self.module, bn, "gain", "logits", block.channels)
        except InterventionError as exc:
            return BlockDownstream(block.name, index, chans, note=str(exc))
        head = build_head(self.module, seg.frontier)
        beta = torch.zeros(block.channels, device=self.dev)
        if bn.gain_module is not None and self.module.get_submodule(bn.gain_module).bias is not None:
            beta = self.module.get_submodule(bn.gain_module).bias.detach().float().to(self.dev)
        rows = torch.as_tensor(edit_rows(chans, self.opts.x3_factors, block.channels), dtype=torch.float32,
                               device=self.dev)
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), 64):
                vals = list(head(self.inputs(images[i:i + 64])))
                per_call = max(1, self.opts.batch_size // len(vals[0]))
                chunk = []
                for j in range(0, len(rows), per_call):
                    f = rows[j:j + per_call]
                    y = seg.run(vals, f, (1 - f) * beta[None])
                    chunk.append(y.reshape(len(f), len(vals[0]), -1).float().cpu().numpy())
                out.append(np.concatenate(chunk))
        logits = np.concatenate(out, axis=1)
        return BlockDownstream(block.name, index, chans,
                               logits.reshape(len(self.opts.x3_factors), len(chans), *logits.shape[1:]))


class _Onnx(OnnxRunner):
    """onnxruntime: the plain logits once, then each block's segment with the edited initializers fed in."""

    def base(self, images) -> np.ndarray:
        from resstream_assert.loading.ort_session import plain_session

        path = self.env.loaded.onnx_path
        assert path is not None  # this runner serves ONNX models only, and they come from a file
        sess = plain_session(path, self.env.loaded.digest, self.providers)
        return np.concatenate([np.asarray(sess.run(None, {self.input_name: self.inputs(images[i:i + 64])})[0], np.float32)
                               for i in range(0, len(images), 64)])

    def block(self, index: int, chans: np.ndarray, images) -> BlockDownstream:
        from resstream_assert.interventions.segment_onnx import build_onnx_segment, head_session

        block = self.env.rmap[index]
        try:
            seg = build_onnx_segment(self.model, self.graph, block, "gain", "logits", self.providers, self.types)
            seg.feeds(np.ones(block.channels), beta="held")  # a folded BN cannot hold beta: say so now
        except InterventionError as exc:
            return BlockDownstream(block.name, index, chans, note=str(exc))
        head = head_session(self.model, list(seg.frontier), self.providers, key=(self.env.loaded.digest, index))
        rows = edit_rows(chans, self.opts.x3_factors, block.channels)
        out = []
        for i in range(0, len(images), 64):
            values = dict(zip(seg.frontier, head.run(list(seg.frontier), {self.input_name: self.inputs(images[i:i + 64])})))
            out.append(np.stack([np.asarray(seg.session.run(list(seg.outputs), {**values, **seg.feeds(r, "held")})[0],
                                            np.float32) for r in rows]))
        logits = np.concatenate(out, axis=1)
        return BlockDownstream(block.name, index, chans,
                               logits.reshape(len(self.opts.x3_factors), len(chans), *logits.shape[1:]))
