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
- beyond the recipe (settings ``pass_relu``, ``crop``, ``plateau``): a rectified site that is
  zero on the grey start is optimised through a pass-through ReLU (:mod:`.featviz_graph`),
  each chunk (one block) runs on the block's receptive field only (:mod:`.featviz_crop`), and
  an image may stop early once its objective plateaus (:mod:`.featviz_chunk`);
- CUDA: ``device``, ``channels_last``, bf16 autocast (``amp``) and TF32 (``tf32``) are
  options; the final objective is always measured in fp32 with TF32 off. The same code
  runs on CPU (autocast to bf16 included), which is how the tests cover it.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from resstream_assert.discovery.residual_map import SITES
from resstream_assert.discovery.torch_graph import block_nodes, trace
from resstream_assert.stimuli.featviz_chunk import measure_units, optimize_chunk, site_list
from resstream_assert.torch_utils import tf32
from resstream_assert.stimuli.featviz_crop import block_window
from resstream_assert.stimuli.featviz_graph import site_graph
from resstream_assert.stimuli.featviz_param import PAPERS_SIZE, STAGE_JITTER, paper_jitter

__all__ = ["FeatvizResult", "FeatvizSettings", "Target", "check_targets", "jitter_for", "make_targets", "measure",
           "optimize", "site_graph", "tf32"]

REGIMES = ("block", "per-layer")


@dataclass(frozen=True)
class FeatvizSettings:
    """How to optimise (defaults: the papers' recipe, with fewer steps than their 2560).

    ``regime="block"`` gives the three sites of a block one jitter (``jitter``, or the papers'
    value for the block's depth, W5, which is in pixels of their 224 px images: with
    ``scale_jitter`` it is scaled to the image size, so a 32 px CIFAR image is not shifted by
    half its width, 16 px); ``"per-layer"`` reproduces the papers' table in pixels, where the
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
    pass_relu: bool = True  # a rectified site's gradient passes its ReLU where the unit is 0 (False: the papers')
    crop: bool = True  # forward only the block's receptive field (exact; with clone, truncate and no compile)
    scale_jitter: bool = True  # block regime: the papers' jitter (px at 224 px) scaled to the image size
    plateau: int = 0  # early stop (0: off): an image stops when its objective gained <= 1% over its last N steps

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
        if not (isinstance(self.plateau, int) and self.plateau >= 0):
            raise ValueError(f"featviz plateau={self.plateau}: must be a whole number of steps >= 0 (0: no early stop)")
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
    the final image (no transforms, a cloned fp32 forward); ``jitter`` (N,) the jitter used;
    ``steps_run`` (N,) the steps each image was optimised (``settings.steps`` unless ``plateau``
    stopped it early).

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
    steps_run: np.ndarray | None = None


def make_targets(blocks: Sequence[int], sites: Sequence[str], channels: Sequence[int] | np.ndarray,
                 seeds: int = 1) -> list[Target]:
    """All combinations, in block, site, channel, seed order.

    Example:
        >>> len(make_targets([3], ["skip_out", "branch_out", "resid_sum"], range(64)))
        192
    """
    return [Target(b, s, int(c), k) for b in blocks for s in sites for c in channels for k in range(seeds)]


def jitter_for(module: nn.Module, target: Target, settings: FeatvizSettings, size: int | None = None) -> int:
    """The jitter ``target`` is optimised with under ``settings.regime`` (see :class:`FeatvizSettings`);
    ``size``: the image side, for ``scale_jitter`` (None: the papers' pixels).

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
        if settings.jitter is not None:
            return int(settings.jitter)
        return default if size is None or not settings.scale_jitter else int(round(default * size / PAPERS_SIZE))
    if settings.regime != "per-layer":
        raise ValueError(f"regime must be one of {REGIMES}, got {settings.regime!r}")
    own = paper_jitter(qual[getattr(bn, target.site)])
    return default if own is None else own


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
    return measure_units(module, module, images, list(targets), mean, std, clone, batch_size, torch.device(device))


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
    jitters = np.array([jitter_for(module, t, settings, size) for t in targets], dtype=np.int64)
    chunks = block_chunks(targets, settings.batch_size)
    images = np.empty((len(targets), 3, size, size), np.float32)
    steps_run = np.empty(len(targets), np.int64)
    done = [0, settings.steps * len(chunks)]
    shared = None  # torch.compile: one graph (all sites) compiled once, reused by every chunk
    if settings.compile and settings.clone:
        all_sites = site_list(targets)
        shared = all_sites, torch.compile(site_graph(module, all_sites, root=root, pass_relu_sites=settings.pass_relu))
    # The crop needs the cut, cloned graph of the chunk's own sites (a shared compiled graph spans blocks).
    crop = settings.crop and settings.clone and settings.truncate and shared is None
    for chunk in chunks:
        window = block_window(module, targets[chunk[0]].block, size, root) if crop else None
        images[chunk], steps_run[chunk] = optimize_chunk(module, root, [targets[i] for i in chunk], jitters[chunk],
                                                         size, settings, mean, std, dev, progress, done, shared, window)
    objective = measure_units(module, root, images, list(targets), mean, std, True, settings.batch_size, dev,
                              settings.channels_last)
    return FeatvizResult(images, objective, targets, settings, jitters, steps_run)


def block_chunks(targets: Sequence[Target], batch_size: int) -> list[list[int]]:
    """Indices of ``targets`` in chunks of at most ``batch_size``, each of one block (block, site order).

    Example:
        >>> block_chunks([Target(2, "skip_out", 0), Target(1, "branch_out", 0), Target(2, "branch_out", 1)], 8)
        [[1], [0, 2]]
    """
    order = sorted(range(len(targets)), key=lambda i: (targets[i].block, SITES.index(targets[i].site)))
    chunks = []
    for _, group in itertools.groupby(order, key=lambda i: targets[i].block):
        rows = list(group)
        chunks += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return chunks
