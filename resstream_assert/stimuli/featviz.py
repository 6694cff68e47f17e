"""Batched feature visualization of residual-stream sites: the papers' lucent recipe, many images at once.

The papers optimised one image per (module, channel) with torch-lucent 0.1.8 (spec §2.1a):
``objectives.neuron`` (the centre unit ``act[:, c, H//2, W//2]``), Fourier parameters with
decorrelated colour (:mod:`.featviz_param`), Adam lr 0.05, random transforms, the model's
normalisation. Here every target (block x site x channel x seed) is one image in the batch
of one optimisation:

- the loss is a sum of per-image terms and Adam is elementwise, so each image follows its
  own trajectory, with its own random draws. With kernels that compute each image alone
  (torch's native CPU convolutions: ``torch.backends.mkldnn.flags(enabled=False)``) batched
  and alone are the same numbers, bit for bit. oneDNN, the default, picks its algorithm by
  batch size, so one forward differs by float reassociation (~1e-7), and near a ReLU or
  max-pool tie Adam can grow that to a visible pixel difference within a few steps
  (``tests/test_featviz.py`` tests both statements);
- the forward is a copy of the traced graph cut after the deepest site a chunk needs, whose
  outputs are **clones** taken right after each site's node (W1: torchvision's in-place
  ``ReLU`` would otherwise overwrite the summed tensor). ``clone=False`` reads un-cloned
  module outputs through hooks, as lucent does, to show the bug: there the ``bn2``
  objective optimises ``resid_post``;
- CUDA: ``device``, ``channels_last``, bf16 autocast (``amp``) and TF32 (``tf32``) are
  options; the final objective is always measured in fp32 with TF32 off. The same code
  runs on CPU (autocast to bf16 included), which is how the tests cover it.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from resstream_assert.discovery.residual_map import SITES
from resstream_assert.discovery.torch_graph import block_nodes, copy_graph, trace
from resstream_assert.torch_utils import module_outputs, no_tf32, tf32
from resstream_assert.stimuli.featviz_param import (COLOR_CORRELATION, STAGE_JITTER, draws, freq_scale,
                                                          paper_jitter, to_rgb)

REGIMES = ("block", "per-layer")


@dataclass(frozen=True)
class FeatvizSettings:
    """How to optimise (defaults: the papers' recipe, with fewer steps than their 2560).

    ``regime="block"`` gives the three sites of a block one jitter (``jitter``, or the papers'
    value for the block's depth; W5); ``"per-layer"`` reproduces the papers' table, where the
    site's own module name decides. ``seed`` is the run's seed (mixed into every image's draws).

    Example:
        >>> FeatvizSettings(steps=32, regime="per-layer").check().lr
        0.05
    """

    steps: int = 256
    lr: float = 0.05
    size: int | None = None  # image side in px; None = the model's input size
    regime: str = "block"
    jitter: int | None = None
    fft: bool = True
    decorrelate: bool = True
    device: str = "cpu"
    amp: bool = False  # bf16 autocast of the forward
    tf32: bool = False  # allow TF32 matmuls/convolutions on CUDA while optimising
    channels_last: bool = False
    batch_size: int = 64  # images per optimisation chunk
    compile: bool = False  # torch.compile the cut graph (does not pay on CPU)
    truncate: bool = True  # stop the forward at the deepest site (False: the whole network, as lucent runs it)
    clone: bool = True  # False: lucent's aliasing bug, for tests and sensitivity checks only
    seed: int = 0

    def check(self) -> "FeatvizSettings":
        """Raise ValueError naming the first unusable value.

        Example:
            >>> FeatvizSettings(lr=0).check()
            Traceback (most recent call last):
            ...
            ValueError: featviz lr=0: must be > 0 (the papers: 0.05)
        """
        if not (isinstance(self.steps, int) and self.steps >= 0):
            raise ValueError(f"featviz steps={self.steps}: must be a whole number >= 0 (the papers: 2560)")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ValueError(f"featviz lr={self.lr}: must be > 0 (the papers: 0.05)")
        if self.regime not in REGIMES:
            raise ValueError(f"featviz regime={self.regime!r}: use one of {REGIMES}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"featviz size={self.size}: must be at least 8 px")
        if self.jitter is not None and self.jitter < 0:
            raise ValueError(f"featviz jitter={self.jitter}: must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"featviz batch_size={self.batch_size}: must be >= 1")
        return self

    def key(self) -> dict:
        """The settings that change the images (for cache keys)."""
        return asdict(self)


@dataclass(frozen=True, order=True)
class Target:
    """One visualization: the centre unit of ``channel`` at ``site`` of block ``block``, with image seed ``seed``.

    Example:
        >>> Target(3, "branch_out", 7, 0).site
        'branch_out'
    """

    block: int
    site: str
    channel: int
    seed: int = 0


@dataclass(frozen=True)
class FeatvizResult:
    """``images`` float32 (N, 3, H, W) in [0, 1]; ``objective`` (N,) each image's own centre unit on
    the final image (no transforms, a cloned fp32 forward); ``jitter`` (N,) the jitter used.

    Example:
        >>> r = optimize(model, [Target(1, "branch_out", 0)], mean=m, std=s, input_size=32)  # doctest: +SKIP
        >>> r.images.shape, r.objective.shape  # doctest: +SKIP
        ((1, 3, 32, 32), (1,))
    """

    images: np.ndarray
    objective: np.ndarray
    targets: tuple[Target, ...]
    settings: FeatvizSettings
    jitter: np.ndarray


def make_targets(blocks: Sequence[int], sites: Sequence[str], channels: Sequence[int],
                 seeds: int = 1) -> list[Target]:
    """All combinations, in block, site, channel, seed order.

    Example:
        >>> len(make_targets([3], ["skip_out", "branch_out", "resid_sum"], range(64)))
        192
    """
    return [Target(b, s, int(c), k) for b in blocks for s in sites for c in channels for k in range(seeds)]


def jitter_for(module: nn.Module, target: Target, settings: FeatvizSettings) -> int:
    """The jitter ``target`` is optimised with under ``settings.regime`` (see :class:`FeatvizSettings`).

    Example:
        >>> m = torchvision.models.resnet18()  # doctest: +SKIP
        >>> [jitter_for(m, Target(3, s, 0), FeatvizSettings(regime="per-layer"))
        ...  for s in ("skip_out", "branch_out", "resid_post")]  # doctest: +SKIP
        [0, 4, 4]
    """
    nodes, qual = block_nodes(module), trace(module).qualname
    bn = nodes[target.block]
    default = paper_jitter(qual[bn.resid_sum].rsplit(".", 1)[0])  # the block's name, e.g. 'layer2.1'
    default = STAGE_JITTER[min(7, target.block * 8 // len(nodes))] if default is None else default
    if settings.regime == "block":
        return default if settings.jitter is None else int(settings.jitter)
    if settings.regime != "per-layer":
        raise ValueError(f"regime must be one of {REGIMES}, got {settings.regime!r}")
    own = paper_jitter(qual[getattr(bn, target.site)])
    return default if own is None else own


def site_graph(module: nn.Module, sites: Sequence[tuple[int, str]], *, root: nn.Module | None = None,
               truncate: bool = True) -> fx.GraphModule:
    """The traced graph cut after the deepest of ``sites`` ((block, site) pairs); its forward returns
    a tuple with a clone of each site's tensor, taken right after the site's node. ``root``
    supplies the submodules (default ``module``; e.g. a copy moved to a device).
    ``truncate=False`` keeps the whole network (its output is returned last), as lucent runs it.

    Example:
        >>> gm = site_graph(torchvision.models.resnet18(), [(3, "branch_out")])  # doctest: +SKIP
        >>> [o.shape for o in gm(torch.zeros(1, 3, 64, 64))]  # doctest: +SKIP
        [torch.Size([1, 128, 8, 8])]
    """
    nodes, (graph, by_name) = block_nodes(module), copy_graph(module)
    clones: dict[str, fx.Node] = {}
    for b, site in sites:
        src = by_name[getattr(nodes[b], site)]
        if src.name not in clones:
            with graph.inserting_after(src):
                clones[src.name] = graph.call_method("clone", (src,))
    output = next(n for n in graph.nodes if n.op == "output")
    tail = () if truncate else tuple(output.args)
    output.args = (tuple(clones[by_name[getattr(nodes[b], s)].name] for b, s in sites) + tail,)
    gm = fx.GraphModule(root if root is not None else module, graph)
    gm.graph.eliminate_dead_code()  # everything after the deepest site goes
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


@contextmanager
def _forward(module: nn.Module, root: nn.Module, sites: Sequence[tuple[int, str]],
             clone: bool, truncate: bool = True) -> Iterator[Callable[[torch.Tensor], Sequence[torch.Tensor]]]:
    """A function image batch -> site tensors: the cut, cloned graph, or lucent's un-cloned hooks."""
    if clone:
        yield site_graph(module, sites, root=root, truncate=truncate)
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


def check_targets(module: nn.Module, targets: Sequence[Target]) -> None:
    """Raise ValueError for a target whose site, block, channel or seed does not exist."""
    n_blocks = len(block_nodes(module))
    for t in targets:
        if t.site not in SITES or not 0 <= t.block < n_blocks or t.channel < 0 or t.seed < 0:
            raise ValueError(f"bad target {t}: site must be one of {SITES}, block in [0, {n_blocks}), "
                             "channel and seed >= 0")


def measure(module: nn.Module, images: np.ndarray | torch.Tensor, targets: Sequence[Target], *,
            mean: Sequence[float], std: Sequence[float], clone: bool = True, batch_size: int = 64,
            device: str = "cpu") -> np.ndarray:
    """Centre-unit value of each image's own target (image i <-> target i), no transforms, fp32;
    ``module`` must be on ``device``. ``clone=False`` reads lucent's un-cloned hook output.

    Example:
        >>> measure(model, result.images, result.targets, mean=m, std=s)  # doctest: +SKIP
        array([3.1, 2.7], dtype=float32)
    """
    check_targets(module, targets)
    return _measure(module, module, images, list(targets), mean, std, clone, batch_size, torch.device(device))


def optimize(module: nn.Module, targets: Sequence[Target], settings: FeatvizSettings = FeatvizSettings(), *,
             mean: Sequence[float], std: Sequence[float], input_size: int,
             progress: Callable[[int, int], None] | None = None) -> FeatvizResult:
    """Optimise one image per target, all targets batched (chunks of ``settings.batch_size``).

    ``module`` is not modified (a frozen copy is moved to ``settings.device``). ``progress``
    receives (steps done, steps total) summed over chunks.

    Example:
        >>> loaded = load_model("zoo:resnet18-synth96")  # doctest: +SKIP
        >>> r = optimize(loaded.module, make_targets([3], ["branch_out"], range(8)), FeatvizSettings(steps=64),
        ...              mean=loaded.mean, std=loaded.std, input_size=loaded.input_size)  # doctest: +SKIP
    """
    targets = tuple(targets)
    settings.check()
    check_targets(module, targets)
    dev = torch.device(settings.device)
    root = copy.deepcopy(module).eval().requires_grad_(False).to(dev)
    if settings.channels_last:
        root = root.to(memory_format=torch.channels_last)
    size = int(settings.size or input_size)
    jitters = np.array([jitter_for(module, t, settings) for t in targets], dtype=np.int64)
    order = sorted(range(len(targets)), key=lambda i: (targets[i].block, SITES.index(targets[i].site)))
    chunks = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    images = np.empty((len(targets), 3, size, size), np.float32)
    done = [0, settings.steps * len(chunks)]
    shared = None  # torch.compile: one graph (all sites) compiled once, reused by every chunk
    if settings.compile and settings.clone:
        all_sites = _site_list(targets)
        shared = all_sites, torch.compile(site_graph(module, all_sites, root=root))
    for chunk in chunks:
        images[chunk] = _optimize_chunk(module, root, [targets[i] for i in chunk], jitters[chunk], size,
                                        settings, mean, std, dev, progress, done, shared)
    objective = _measure(module, root, images, list(targets), mean, std, True, settings.batch_size, dev,
                         settings.channels_last)
    return FeatvizResult(images, objective, targets, settings, jitters)


def _gather(outs: Sequence[torch.Tensor], groups: list[tuple[int, torch.Tensor, torch.Tensor]],
            check: bool = True) -> torch.Tensor:
    """Per-image centre unit of its own (site, channel): groups = (output index, rows, channels)."""
    parts, rows_all = [], []
    for k, rows, chans in groups:
        out = outs[k]
        if check and int(chans.max()) >= out.shape[1]:  # a device sync: only on the first step
            raise ValueError(f"channel {int(chans.max())} out of range: the site has {out.shape[1]} channels")
        parts.append(out[rows, chans, out.shape[2] // 2, out.shape[3] // 2].float())
        rows_all.append(rows)
    vals = torch.cat(parts)
    return torch.empty_like(vals).index_copy(0, torch.cat(rows_all), vals)


def _stats(mean, std, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.tensor(v, dtype=torch.float32, device=dev).view(1, 3, 1, 1) for v in (mean, std))


def _site_list(targets: Sequence[Target]) -> list[tuple[int, str]]:
    return sorted({(t.block, t.site) for t in targets}, key=lambda s: (s[0], SITES.index(s[1])))


def _groups(targets: Sequence[Target], dev: torch.device, sites: list[tuple[int, str]] | None = None):
    sites = sites or _site_list(targets)
    groups: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for k, (b, s) in enumerate(sites):
        rows = [i for i, t in enumerate(targets) if (t.block, t.site) == (b, s)]
        if not rows:  # a shared (compiled) graph computes sites this chunk does not use
            continue
        groups.append((k, torch.tensor(rows, device=dev), torch.tensor([targets[i].channel for i in rows], device=dev)))
    return sites, groups


def _optimize_chunk(module, root, targets, jitters, size, settings, mean, std, dev, progress, done,
                    shared=None) -> np.ndarray:
    keys = [(settings.seed, t.seed, t.block, SITES.index(t.site), t.channel) for t in targets]
    drawn = [draws(k, size, settings.steps, int(j), settings.fft) for k, j in zip(keys, jitters)]
    param = torch.tensor(np.stack([d[0] for d in drawn]), device=dev, requires_grad=True)
    thetas = torch.tensor(np.stack([d[1] for d in drawn], 1), device=dev)  # (steps, N, 2, 3)
    color, fscale = torch.tensor(COLOR_CORRELATION, device=dev), (freq_scale(size, dev) if settings.fft else None)
    rgb = dict(fft=settings.fft, decorrelate=settings.decorrelate, color=color, fscale=fscale)
    m, s = _stats(mean, std, dev)
    sites, groups = _groups(targets, dev, shared[0] if shared else None)
    opt = torch.optim.Adam([param], lr=settings.lr)
    n = len(targets)
    amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=settings.amp)
    with nullcontext(shared[1]) if shared else _forward(module, root, sites, settings.clone,
                                                        settings.truncate) as forward, \
            tf32(dev, settings.tf32):
        for step in range(settings.steps):
            opt.zero_grad(set_to_none=True)
            img = to_rgb(param, size, **rgb)
            grid = F.affine_grid(thetas[step], [n, 3, size, size], align_corners=False)
            x = (F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False) - m) / s
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                outs = forward(x)
            loss = -_gather(outs, groups, check=step == 0).sum()
            loss.backward()
            opt.step()
            done[0] += 1
            if progress is not None:
                progress(done[0], done[1])
    with torch.no_grad():
        return to_rgb(param, size, **rgb).float().cpu().numpy()


def _measure(module, root, images, targets, mean, std, clone, batch_size, dev, channels_last=False) -> np.ndarray:
    images = torch.as_tensor(images, dtype=torch.float32)
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images for {len(targets)} targets; need one image per target")
    m, s = _stats(mean, std, dev)
    out = np.empty(len(targets), np.float32)
    for i in range(0, len(targets), batch_size):
        part = targets[i:i + batch_size]
        sites, groups = _groups(part, dev)
        x = (images[i:i + batch_size].to(dev) - m) / s
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), no_tf32(dev), _forward(module, root, sites, clone) as forward:  # as capture does
            out[i:i + len(part)] = _gather(forward(x), groups).cpu().numpy()
    return out
