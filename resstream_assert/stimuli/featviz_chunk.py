"""One chunk of feature visualization: the forward it optimises through, the centre units it reads,
and the Adam loop (with the receptive-field crop and the optional early stop).

Every image of a chunk belongs to one block. The loss is a sum of per-image terms and Adam is
elementwise, so each image follows its own trajectory; the crop window is the block's (never
the chunk's), and the early stop is decided per image from its own objective (a stopped image
keeps the parameters it had when it stopped; the chunk ends when all have stopped), so an
image is the same whether optimised alone or with others.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from resstream_assert.discovery.residual_map import SITES
from resstream_assert.torch_utils import module_outputs, no_tf32, tf32
from resstream_assert.discovery.torch_graph import block_nodes, trace
from resstream_assert.stimuli.featviz_crop import Window
from resstream_assert.stimuli.featviz_graph import site_graph
from resstream_assert.stimuli.featviz_param import COLOR_CORRELATION, draws, freq_scale, to_rgb

#: Early stop: an image has plateaued when its mean objective over its last N steps gained no more than this
#: fraction of the mean over the N steps before.
PLATEAU_GAIN = 0.01


@contextmanager
def site_forward(module: nn.Module, root: nn.Module, sites: Sequence[tuple[int, str]], clone: bool,
                 truncate: bool = True, pass_relu: bool = False) -> Iterator[Callable]:
    """A function image batch -> site tensors: the cut, cloned graph (``pass_relu``: rectified sites
    through :func:`~.featviz_graph.pass_relu`), or lucent's un-cloned hooks (``clone=False``)."""
    if clone:
        yield site_graph(module, sites, root=root, truncate=truncate, pass_relu_sites=pass_relu)
        return
    graph_nodes, names = {n.name: n for n in trace(module).gm.graph.nodes}, []
    for b, site in sites:
        node = graph_nodes[getattr(block_nodes(module)[b], site)]
        if node.op != "call_module":
            raise ValueError(f"clone=False reads a module's output through a hook (lucent); site {site!r} of block "
                             f"{b} is produced by {node.op} {node.target}, not a module")
        names.append(node.target)
    with module_outputs(root, sorted(set(names)), clone=False) as store:
        def run(x: torch.Tensor) -> list[torch.Tensor]:
            root(x)
            return [store[n] for n in names]
        yield run


def gather(outs: Sequence[torch.Tensor], groups: list, check: bool = True) -> torch.Tensor:
    """Per-image unit of its own (site, channel): groups = (output index, rows, channels, (row, col) or None =
    the map's centre)."""
    parts, rows_all = [], []
    for k, rows, chans, pos in groups:
        out = outs[k]
        if check and int(chans.max()) >= out.shape[1]:  # a device sync: only on the first step
            raise ValueError(f"channel {int(chans.max())} out of range: the site has {out.shape[1]} channels")
        cy, cx = pos if pos is not None else (out.shape[2] // 2, out.shape[3] // 2)
        parts.append(out[rows, chans, cy, cx].float())
        rows_all.append(rows)
    vals = torch.cat(parts)
    return torch.empty_like(vals).index_copy(0, torch.cat(rows_all), vals)


def stats(mean, std, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t, std_t = (torch.tensor(v, dtype=torch.float32, device=dev).view(1, 3, 1, 1) for v in (mean, std))
    return mean_t, std_t


def site_list(targets) -> list[tuple[int, str]]:
    return sorted({(t.block, t.site) for t in targets}, key=lambda s: (s[0], SITES.index(s[1])))


def groups_of(targets, dev: torch.device, sites: list[tuple[int, str]] | None = None, window: Window | None = None):
    """(sites, groups) for :func:`gather`: the sites to compute, and per site the rows reading it."""
    sites = sites or site_list(targets)
    groups = []
    for k, (b, s) in enumerate(sites):
        rows = [i for i, t in enumerate(targets) if (t.block, t.site) == (b, s)]
        if not rows:  # a shared (compiled) graph computes sites this chunk does not use
            continue
        groups.append((k, torch.tensor(rows, device=dev), torch.tensor([targets[i].channel for i in rows], device=dev),
                       None if window is None else window.centre[s]))
    return sites, groups


def transform(img: torch.Tensor, theta: torch.Tensor, size: int, window: Window | None) -> torch.Tensor:
    """The step's random transform, sampled at the window's output pixels only (the same numbers as
    sampling the whole image and cropping: ``grid_sample`` computes each output pixel from its grid point).

    Example:
        >>> img, theta = torch.rand(1, 3, 8, 8), torch.eye(2, 3)[None]
        >>> w = Window(2, 6, 0, 4, {})
        >>> torch.equal(transform(img, theta, 8, w), transform(img, theta, 8, None)[:, :, 2:6, 0:4])
        True
    """
    grid = F.affine_grid(theta, [len(img), 3, size, size], align_corners=False)
    if window is not None:
        grid = grid[:, window.r0:window.r1, window.c0:window.c1]
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Plateau:
    """Per-image early stop: after every ``n`` steps (from ``2n`` on), an image whose mean objective over
    its last ``n`` steps gained no more than :data:`PLATEAU_GAIN` of the ``n`` before stops, keeping its parameters.

    Example:
        >>> p = Plateau(2, 1)
        >>> [p.update(s, torch.tensor([1.0]), torch.zeros(1, 2)) for s in range(4)]
        [False, False, False, True]
        >>> p.steps_run.tolist()
        [4]
    """

    def __init__(self, n: int, images: int, steps: int | None = None):
        self.n = n
        self.values: list[torch.Tensor] = []
        self.kept: dict[int, torch.Tensor] = {}
        self.steps_run = np.full(images, steps if steps is not None else 0, np.int64)

    def update(self, step: int, values: torch.Tensor, param: torch.Tensor) -> bool:
        """Record the step's objectives; stop the images that plateaued. True when all have stopped."""
        self.values.append(values.detach().float().cpu())
        done = step + 1
        if done % self.n or done < 2 * self.n:
            return False
        hist = torch.stack(self.values[-2 * self.n:])
        prev, last = hist[:self.n].mean(0), hist[self.n:].mean(0)
        for i in torch.nonzero(last - prev <= PLATEAU_GAIN * prev.abs()).flatten().tolist():
            if i not in self.kept:
                self.kept[i], self.steps_run[i] = param[i].detach().clone(), done
        return len(self.kept) == len(self.steps_run)

    def restore(self, param: torch.Tensor) -> None:
        with torch.no_grad():
            for i, p in self.kept.items():
                param[i] = p


def step_values(param: torch.Tensor, theta: torch.Tensor, forward: Callable, groups: list, size: int, settings,
                rgb: dict, norm: tuple[torch.Tensor, torch.Tensor], window: Window | None,
                check: bool = False) -> torch.Tensor:
    """One step's objective per image: parameters -> image -> random transform (at the window's pixels)
    -> normalisation -> forward (bf16 autocast with ``settings.amp``) -> each image's own unit."""
    x = (transform(to_rgb(param, size, **rgb), theta, size, window) - norm[0]) / norm[1]
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=settings.amp):
        return gather(forward(x), groups, check=check)


def optimize_chunk(module, root, targets, jitters, size, settings, mean, std, dev, progress, done,
                   shared=None, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimise one chunk (targets of one block): (images, steps each image ran)."""
    keys = [(settings.seed, t.seed, t.block, SITES.index(t.site), t.channel) for t in targets]
    drawn = [draws(k, size, settings.steps, int(j), settings.fft) for k, j in zip(keys, jitters)]
    param = torch.tensor(np.stack([d[0] for d in drawn]), device=dev, requires_grad=True)
    thetas = torch.tensor(np.stack([d[1] for d in drawn], 1), device=dev)  # (steps, N, 2, 3)
    color, fscale = torch.tensor(COLOR_CORRELATION, device=dev), (freq_scale(size, dev) if settings.fft else None)
    rgb = dict(fft=settings.fft, decorrelate=settings.decorrelate, color=color, fscale=fscale)
    m, s = stats(mean, std, dev)
    sites, groups = groups_of(targets, dev, shared[0] if shared else None, window)
    opt = torch.optim.Adam([param], lr=settings.lr)
    stop = Plateau(settings.plateau, len(targets), settings.steps) if settings.plateau else None
    with nullcontext(shared[1]) if shared else site_forward(module, root, sites, settings.clone, settings.truncate,
                                                            settings.pass_relu) as forward, tf32(dev, settings.tf32):
        for step in range(settings.steps):
            opt.zero_grad(set_to_none=True)
            values = step_values(param, thetas[step], forward, groups, size, settings, rgb, (m, s), window,
                                 check=step == 0)
            (-values.sum()).backward()
            opt.step()
            finished = stop is not None and stop.update(step, values, param)
            done[0] += settings.steps - step if finished else 1
            if progress is not None:
                progress(done[0], done[1])
            if finished:
                break
    if stop is not None:
        stop.restore(param)
    with torch.no_grad():
        images = to_rgb(param, size, **rgb).float().cpu().numpy()
    return images, (stop.steps_run if stop is not None else np.full(len(targets), settings.steps, np.int64))


def measure_units(module, root, images, targets, mean, std, clone, batch_size, dev, channels_last=False) -> np.ndarray:
    """Each image's own unit (whole image, no transforms, fp32): the implementation of ``featviz.measure``."""
    images = torch.as_tensor(images, dtype=torch.float32)
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images for {len(targets)} targets; need one image per target")
    m, s = stats(mean, std, dev)
    out = np.empty(len(targets), np.float32)
    for i in range(0, len(targets), batch_size):
        part = targets[i:i + batch_size]
        sites, groups = groups_of(part, dev)
        x = (images[i:i + batch_size].to(dev) - m) / s
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), no_tf32(dev), site_forward(module, root, sites, clone) as forward:  # as capture does
            out[i:i + len(part)] = gather(forward(x), groups).cpu().numpy()
    return out
