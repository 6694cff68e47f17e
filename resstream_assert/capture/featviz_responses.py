"""Feature visualizations as a stimulus source: sample channels, optimise (cached), capture, check success.

For each analysed block (all but the first, which the papers never analyse) and each sampled
channel ``c``, one image per seed is optimised for the centre unit of each of the three sites
the measures read: ``I = skip_out``, ``B = branch_out`` and ``O = resid_sum`` (the P2 "Post",
pre-activation). ``skip_out`` of an X.1 block is X.0's rectified output: where it is zero on the
grey start it has no gradient, so it is optimised through a pass-through ReLU (its
pre-activation's gradient there, the unit's own elsewhere; ``FeatvizSettings.pass_relu``). The images
are quantised to 8 bit, as the papers saved their FZs as PNG (W14), and become a probe set of
their own, captured like any other (all sites, every stimulus variant the claims need).

Success check (spec W1): an image succeeds when its unit's response to it exceeds the 99th
percentile of that unit's responses to the run's probe set. Failed images are counted and
left out: a channel whose every seed failed at a site has no stimulus there, and every
quantity that needs it is undefined (never coded as skip or overwrite).

The result is numpy data: per block and site, an index array ``(C, K)`` of stimulus rows
(``-1`` = no stimulus) that ``measures.BlockStimuli`` takes in place of top-k exemplars.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from resstream_assert.capture import CaptureSettings
from resstream_assert.capture.responses import REDUCERS
from resstream_assert.capture.cache import ArrayCache, ResponseCache, cache_key
from resstream_assert.capture.responses import Responses
from resstream_assert.discovery.residual_map import Block, ResidualMap
from resstream_assert.stimuli.featviz import FeatvizSettings, Target, make_targets, optimize
from resstream_assert.stimuli.probe import ProbeSet

#: The sites visualised, as the papers' I, B and O (O = the pre-activation sum, P2's "Post").
FEATVIZ_SITES: tuple[str, ...] = ("skip_out", "branch_out", "resid_sum")
SITE_LABELS = {"skip_out": "I", "branch_out": "B", "resid_sum": "O"}
SUCCESS_PERCENTILE = 99.0


def sample_channels(rmap: ResidualMap, n: int | None, seed: int, skip_first: bool = True) -> dict[int, np.ndarray]:
    """Block index -> the channels to visualise: all, or ``n`` drawn without replacement (seeded per block).

    Example:
        >>> {b: c.tolist() for b, c in sample_channels(rmap, 2, seed=0).items()}  # doctest: +SKIP
        {1: [5, 40], 2: [3, 17], ...}
    """
    out = {}
    for block in list(rmap)[1 if skip_first and len(rmap) > 1 else 0:]:
        if n is None or n >= block.channels:
            out[block.index] = np.arange(block.channels)
        else:
            rng = np.random.default_rng([seed, zlib.crc32(b"featviz-channels"), block.index])
            out[block.index] = np.sort(rng.choice(block.channels, int(n), replace=False))
    return out


@dataclass(frozen=True)
class BlockImages:
    """One block's visualizations: ``images`` uint8 (N, 3, H, W), one per target, in target order.

    ``objective`` is the optimiser's own fp32 reading on the float image (before 8-bit
    quantisation); the success check uses the captured response to the stored image.
    """

    block: int
    name: str
    targets: tuple[Target, ...]
    images: np.ndarray
    objective: np.ndarray
    jitter: np.ndarray
    seconds: float
    cached: bool
    steps_run: np.ndarray | None = None  # steps each image ran (early stop); None: settings.steps for all


def visualize_block(loaded, block: Block, channels: Sequence[int] | np.ndarray, seeds: int, settings: FeatvizSettings,
                    cache: ArrayCache | None = None, progress: Callable[[int, int], None] | None = None) -> BlockImages:
    """Optimise I, B and O images for ``channels`` of ``block`` (``seeds`` each), from the disk cache if there.

    The cache key covers the weights (digest), block, channels, seeds, every setting, the
    normalisation and the versions of this package and torch.

    Example:
        >>> bi = visualize_block(loaded, rmap[3], [0, 5], 1, FeatvizSettings(steps=16))  # doctest: +SKIP
        >>> bi.images.shape  # doctest: +SKIP
        (6, 3, 96, 96)
    """
    from importlib.metadata import version

    from resstream_assert import __version__

    targets = tuple(make_targets([block.index], FEATVIZ_SITES, channels, seeds))
    size = int(settings.size or loaded.input_size)
    key = cache_key(kind="featviz", model=loaded.digest, block=block.index, channels=[int(c) for c in channels],
                    seeds=seeds, settings=settings.key(), size=size, mean=list(loaded.mean), std=list(loaded.std),
                    version=__version__, torch=version("torch"))
    cache = cache or ArrayCache(None)
    before, start = cache.hits, time.perf_counter()

    def compute() -> dict:
        r = optimize(loaded.module, targets, settings, mean=loaded.mean, std=loaded.std,
                     input_size=loaded.input_size, progress=progress)
        return {"images": quantize(r.images), "objective": r.objective, "jitter": r.jitter,
                "steps_run": r.steps_run}

    got = cache.get_or_compute(key, compute)
    return BlockImages(block.index, block.name, targets, got["images"], got["objective"], got["jitter"],
                       time.perf_counter() - start, cache.hits > before, got.get("steps_run"))


def quantize(images: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8, rounded (the papers' PNG round trip, W14).

    Example:
        >>> quantize(np.array([0.0, 0.5, 1.0])).tolist()
        [0, 128, 255]
    """
    return np.clip(np.round(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


def as_probe(blocks: Sequence[BlockImages]) -> ProbeSet:
    """All blocks' images as one unlabeled probe set (rows in block, site, channel, seed order).

    Example:
        >>> len(as_probe([bi]))  # doctest: +SKIP
        6
    """
    images = np.concatenate([b.images for b in blocks]) if blocks else np.zeros((0, 3, 8, 8), np.uint8)
    names = [f"featviz:{b.name}/{t.site}/{t.channel}/{t.seed}" for b in blocks for t in b.targets]
    return ProbeSet.build(images, np.full(len(names), -1), names, ())


@dataclass(frozen=True)
class FeatvizStimuli:
    """The featviz stimulus source of one model: what the measures and the reports need.

    ``responses`` (variant -> :class:`Responses`) holds every site's response to every image;
    ``indices[block][site]`` is ``(C, K)``: row of channel c's k-th stimulus, ``-1`` where the
    channel was not sampled or the image failed the success check. ``value``, ``threshold``
    and ``ok`` are per image (row).

    Example:
        >>> fz.summary(3)  # doctest: +SKIP
        {'channels_sampled': 16, 'seeds': 1, 'ok_I': 9, 'n_I': 16, ...}
    """

    responses: Mapping[str, Responses]
    indices: Mapping[int, Mapping[str, np.ndarray]]
    blocks: tuple[BlockImages, ...]
    value: np.ndarray
    threshold: np.ndarray
    ok: np.ndarray
    seeds: int
    settings: FeatvizSettings
    notes: tuple[str, ...] = field(default_factory=tuple)

    def block_rows(self, block: int) -> tuple[int, BlockImages]:
        """(first row, images) of a block."""
        start = 0
        for b in self.blocks:
            if b.block == block:
                return start, b
            start += len(b.targets)
        raise KeyError(f"block {block} was not visualised (visualised: {[b.block for b in self.blocks]})")

    def rates(self) -> dict[str, tuple[int, int]]:
        """Per site label (I, B, O): (successful images, images tried) over every visualised block.

        Example:
            >>> fz.rates()  # doctest: +SKIP
            {'I': (15, 16), 'B': (16, 16), 'O': (16, 16)}
        """
        out = {}
        for site in FEATVIZ_SITES:
            mask = np.array([t.site == site for b in self.blocks for t in b.targets], bool)
            out[SITE_LABELS[site]] = (int(self.ok[mask].sum()), int(mask.sum()))
        return out

    def summary(self, block: int) -> dict[str, float]:
        """Sampled channels and, per site (I, B, O), successful images and images tried."""
        start, bi = self.block_rows(block)
        ok = self.ok[start:start + len(bi.targets)]
        out: dict[str, float] = {"channels_sampled": len({t.channel for t in bi.targets}), "seeds": self.seeds}
        for site in FEATVIZ_SITES:
            mask = np.array([t.site == site for t in bi.targets])
            out[f"ok_{SITE_LABELS[site]}"] = int(ok[mask].sum())
            out[f"n_{SITE_LABELS[site]}"] = int(mask.sum())
        return out


def success(blocks: Sequence[BlockImages], fz_id: Responses, probe_id: Responses,
            q: float = SUCCESS_PERCENTILE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: (its unit's response to it, the unit's ``q``-th percentile over the probe set, response > it).

    A dead unit (constant over the probe set) cannot exceed its own constant: it fails.

    Example:
        >>> value, threshold, ok = success(blocks, fz["id"], probe["id"])  # doctest: +SKIP
    """
    value, thr = [], []
    row = 0
    for b in blocks:
        for t in b.targets:
            value.append(float(fz_id.get(t.block, t.site)[row, t.channel]))
            thr.append(float(np.percentile(probe_id.get(t.block, t.site)[:, t.channel], q)))
            row += 1
    value_a, thr_a = np.asarray(value, np.float64), np.asarray(thr, np.float64)
    return value_a, thr_a, value_a > thr_a


def stimulus_indices(blocks: Sequence[BlockImages], ok: np.ndarray, rmap: ResidualMap,
                     seeds: int) -> dict[int, dict[str, np.ndarray]]:
    """Block -> site -> ``(C, K)`` rows of each channel's successful images (``-1``: none).

    Example:
        >>> stimulus_indices(blocks, ok, rmap, 1)[3]["branch_out"].shape  # doctest: +SKIP
        (128, 1)
    """
    out: dict[int, dict[str, np.ndarray]] = {}
    row = 0
    for b in blocks:
        idx = {s: np.full((rmap[b.block].channels, seeds), -1, np.int64) for s in FEATVIZ_SITES}
        for t in b.targets:
            if ok[row]:
                idx[t.site][t.channel, t.seed] = row
            row += 1
        out[b.block] = idx
    return out


def featviz_stimuli(torch_loaded, torch_rmap: ResidualMap, loaded, rmap: ResidualMap, probe_id: Responses, *,
                    channels: Mapping[int, np.ndarray], seeds: int, settings: FeatvizSettings,
                    variants: Sequence[str] = ("id",), run: CaptureSettings = CaptureSettings(),
                    cache_dir: str | None = None) -> FeatvizStimuli:
    """Optimise (``torch_loaded``), capture the images (``loaded``: the run's backend), check success.

    ``probe_id`` are the run's probe-set responses (variant ``id``) on ``loaded``: the success
    thresholds come from them. Disk caches (images and responses) live under ``cache_dir``. The images are
    captured with ``run``'s batch size, device and log, without a progress bar, keeping every reducer.

    Example:
        >>> fz = featviz_stimuli(m, rmap, m, rmap, resp["id"], channels=sample_channels(rmap, 8, 0), seeds=1,
        ...                      settings=FeatvizSettings(steps=64))  # doctest: +SKIP
    """
    from resstream_assert.capture import capture

    if torch_loaded.module is None:
        raise ValueError("feature visualization optimises an image through the model: it needs a torch model "
                         f"({torch_loaded.spec!r} is an ONNX file); use --resstream-stimuli exemplars")
    image_cache = ArrayCache(None if cache_dir is None else f"{cache_dir}/featviz")
    blocks = []
    for index, chans in channels.items():
        block = torch_rmap[index]
        bi = visualize_block(torch_loaded, block, chans, seeds, settings, image_cache)
        if run.log is not None:
            how = "from cache" if bi.cached else f"{settings.steps} steps in {bi.seconds:.1f} s"
            run.log(f"[resstream] featviz {torch_loaded.name} {block.name}: {len(bi.targets)} images "
                f"({len(chans)} channels x I/B/O x {seeds} seed(s)), {how}")
        blocks.append(bi)
    fz_probe = as_probe(blocks)
    responses = capture(loaded, rmap, fz_probe, variants=tuple(variants), cache=ResponseCache(cache_dir),
                        settings=replace(run, progress=False, reducers=REDUCERS))
    value, threshold, ok = success(blocks, responses["id"], probe_id)
    return FeatvizStimuli(responses, stimulus_indices(blocks, ok, rmap, seeds), tuple(blocks), value, threshold, ok,
                          seeds, settings)
