"""X4: attribute the model's output to each channel of a block's ``resid_sum`` with captum.

captum (``pip install 'resstream_assert[attribution]'``) computes layer integrated gradients
(``LayerIntegratedGradients``, default) or layer conductance (``LayerConductance``) for the
predicted class of each image, against a black image as the baseline. The layer is an
identity module placed right after the block's residual add in a copy of the traced
graph, and captum runs only the part of the network after the block's frontier (the
unmodified model runs once per image chunk to it; see
:mod:`~resstream_assert.interventions.segment_torch`), which gives the same attributions
as the whole model, since every path to the output passes through ``resid_sum``.

Torch only: attribution needs gradients, which onnxruntime does not give.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from resstream_assert.errors import InterventionError
from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions.settings import InterventionOptions, model_unchanged


@dataclass(frozen=True)
class BlockAttribution:
    """One block: per image and channel, the attribution summed over positions ``(N, C)`` (float32)."""

    block: str
    index: int
    per_image: np.ndarray | None = None
    delta: float = float("nan")  # mean |completeness gap| / mean |F(x) - F(baseline)| (IG only)
    note: str = ""


@dataclass(frozen=True)
class AttributionData:
    """X4 data; ``status`` is ``ok``, ``not_applicable`` (with ``reason``)."""

    method: str
    n_images: int
    blocks: tuple[BlockAttribution, ...]
    backend: str
    seconds: float = 0.0
    status: str = "ok"
    reason: str = ""


@dataclass(frozen=True)
class AttributionRequest:
    """Attribute the predicted class to every channel of ``resid_sum`` of each listed block.

    Example:
        >>> data = AttributionRequest(InterventionOptions(), (3, 5)).run(env)  # doctest: +SKIP
        >>> data.blocks[0].per_image.shape  # doctest: +SKIP
        (64, 128)
    """

    options: InterventionOptions
    blocks: tuple[int, ...]

    @property
    def key(self) -> tuple:
        o = self.options
        return ("attribution", o.attribution, o.n_steps, o.x4_images, o.batch_size, self.blocks)

    def run(self, env: InterventionEnv) -> AttributionData:
        return run_attribution(env, self)


def captum_missing() -> str:
    """Why captum cannot be used (``''`` when it can).

    Example:
        >>> isinstance(captum_missing(), str)
        True
    """
    try:
        import captum.attr  # noqa: F401
    except ImportError as exc:
        return (f"X4 attributes with captum, which is not installed ({exc}); install it with "
                "pip install 'resstream_assert[attribution]'")
    return ""


def run_attribution(env: InterventionEnv, request: AttributionRequest) -> AttributionData:
    """Run captum on each block of ``request`` (torch only) and return per-image channel attributions.

    Example:
        >>> data = run_attribution(env, request)  # doctest: +SKIP
    """
    opts, loaded = request.options, env.loaded
    n = min(opts.x4_images, len(env.probe))
    skip = lambda why: AttributionData(opts.attribution, n, (), loaded.backend, status="not_applicable",  # noqa: E731
                                       reason=why)
    if loaded.backend != "torch":
        return skip(f"attribution needs gradients, which the {loaded.backend} backend does not give; run the same "
                    "model on the torch backend")
    missing = captum_missing()
    if missing:
        return skip(missing)
    import torch

    from resstream_assert.capture.torch_fx import normalizer
    from resstream_assert.discovery.torch_graph import block_nodes

    env.say(f"[resstream] X4 attribution ({opts.attribution}, {opts.n_steps} steps): {len(request.blocks)} blocks x "
            f"{n} images ...")
    start = time.perf_counter()
    module = loaded.module.eval()
    dev = torch.device(env.device)
    module.to(dev)
    norm = normalizer(loaded.mean, loaded.std, dev)
    x = norm(torch.as_tensor(env.probe.images[:n]).float() / 255)
    black = norm(torch.zeros(1, *x.shape[1:], device=dev))
    with model_unchanged(loaded, "X4 attribution"):
        with torch.inference_mode():
            target = torch.cat([module(x[i:i + 64]).argmax(1) for i in range(0, n, 64)])
        nodes = block_nodes(module)
        out = []
        for index in request.blocks:
            block = env.rmap[index]
            try:
                out.append(_block(module, nodes[index], block, x, black, target, opts))
            except InterventionError as exc:
                out.append(BlockAttribution(block.name, index, note=str(exc)))
            env.say(f"[resstream] X4 {block.name}: {len(out)}/{len(request.blocks)} blocks "
                    f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    env.say(f"[resstream] X4 attribution done in {seconds:.0f} s")
    return AttributionData(opts.attribution, n, tuple(out), loaded.backend, seconds)


def _block(module, bn, block, x, black, target, opts: InterventionOptions) -> BlockAttribution:
    import torch
    from captum.attr import LayerConductance, LayerIntegratedGradients

    from resstream_assert.interventions.segment_torch import build_head, build_segment

    seg = build_segment(module, bn, "sum", "logits", block.channels)
    head = build_head(module, seg.frontier)
    with torch.inference_mode():
        base = [v.clone() for v in head(black)]
    per_image, gaps, spans = [], [], []
    step = max(1, opts.batch_size // opts.n_steps)  # images per captum call; captum stacks n_steps copies
    for i in range(0, len(x), step):
        with torch.inference_mode():
            vals = [v.clone() for v in head(x[i:i + step])]
        inputs = tuple(v.detach() for v in vals)
        baselines = tuple(b.expand_as(v).contiguous() for b, v in zip(base, vals))
        t = target[i:i + step]
        if opts.attribution == "ig":
            method = LayerIntegratedGradients(seg.gm, seg.point, multiply_by_inputs=True)
            attr, delta = method.attribute(inputs, baselines=baselines, target=t, n_steps=opts.n_steps,
                                           return_convergence_delta=True)
            with torch.no_grad():
                diff = seg.gm(*inputs).gather(1, t[:, None]) - seg.gm(*baselines).gather(1, t[:, None])
            gaps.append(delta.detach().abs().cpu().numpy())
            spans.append(diff.abs().flatten().cpu().numpy())
        else:
            method = LayerConductance(seg.gm, seg.point)
            attr = method.attribute(inputs, baselines=baselines, target=t, n_steps=opts.n_steps)
        if isinstance(attr, (tuple, list)):
            attr = attr[0]
        if attr.dim() != 4:
            raise InterventionError(f"captum returned attributions of shape {tuple(attr.shape)}; expected NCHW")
        per_image.append(attr.detach().sum(dim=(2, 3)).float().cpu().numpy())
    delta = float(np.mean(np.concatenate(gaps)) / max(np.mean(np.concatenate(spans)), 1e-12)) if gaps else float("nan")
    return BlockAttribution(block.name, block.index, np.concatenate(per_image), delta)
