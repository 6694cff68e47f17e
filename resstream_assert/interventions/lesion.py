"""Mean-ablation lesions of one block's residual stream under zoom (C10), run fast by cutting the graph.

A lesion sets channels of a block's ``resid_sum`` (the pre-activation sum) to a constant
per channel, the same at every position and for every image: the mean over the labeled
probe images of ``ReLU(center unit)`` at zoom 1 (spec §2.9; W12 a, b are kept as the
papers did them). We record, per image, whether the top-1 prediction is still right.

Which channels to lesion is the claim's business (``claims/ablation.py`` builds a
:class:`LesionRequest` of :class:`BlockPlan` s from the measures); this module runs them.

Speed matters: C10 needs (2 + N) lesion sets x zooms x images forward passes. They run on a
cut graph (:mod:`~resstream_assert.interventions.lesion_runner`: the head once per zoom, the
tail per set), in groups of sets, and a block stops early when the claim's sequential test
says its outcome is clear (``LesionRequest.stop``). torch is imported lazily; the request and
result types are numpy only, so claims read them without torch.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Mapping

import numpy as np

from resstream_assert.interventions import InterventionEnv
from resstream_assert.interventions.lesion_runner import lesion_correctness
from resstream_assert.stats import at_chance

#: Zooms of C10 (1.0 first: ΔD is measured from it). ΔD(2) alone: over the zoo model's random sets the slope over
#: (1, 1.25, 1.5, 2) correlates 0.95-0.97 with it; ``zooms=1,1.25,1.5,2`` restores the four.
DEFAULT_ZOOMS: tuple[float, ...] = (1.0, 2.0)
#: The four zooms of the earlier default (the papers' s = 1.5 is zoom 2).
FOUR_ZOOMS: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)


@dataclass(frozen=True)
class LesionOptions:
    """Knobs of the lesion run (``--resstream-lesion KEY=VALUE`` sets them).

    ``blocks=None`` means the pre-registered default (:func:`default_ablation_blocks`).
    ``batch_size`` counts images per tail call (sets x images stacked). With ``h = sequential``
    and ``N = n_random``, ``h / N >= alpha`` keeps every decision at ``alpha`` that of the fixed
    N-set test (a stopped block has p >= h / N; the defaults 2 / 40 = 0.05).

    Example:
        >>> LesionOptions.from_mapping({"n_random": 200}).n_random
        200
    """

    blocks: tuple[str, ...] | None = None
    zooms: tuple[float, ...] = DEFAULT_ZOOMS
    n_random: int = 40
    seed: int = 0
    batch_size: int = 256
    min_selected: int = 3
    min_images: int = 50
    max_images: int = 512  # lesion runs cost N_random x images: beyond this, the first labeled images are used
    sequential: int = 2  # stop a block's random sets at this many exceedances (Besag-Clifford); 0: run all N
    precision: str = "fp32"  # "bf16": tails in bfloat16, ~2x faster on CPUs with bf16 units, not bit-identical

    @classmethod
    def from_mapping(cls, mapping: Mapping | None, **defaults) -> "LesionOptions":
        """Options from ``{name: value}`` over ``defaults``; an unknown name raises ValueError listing the known.

        Example:
            >>> LesionOptions.from_mapping({"zooms": [1, 2]}, seed=3).zooms
            (1, 2)
        """
        names = {f.name for f in fields(cls)}
        kw = dict(defaults)
        for key, value in (mapping or {}).items():
            if key not in names:
                raise ValueError(f"Unknown lesion option {key!r}; known: {', '.join(sorted(names))}.")
            kw[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kw)

    def check(self) -> "LesionOptions":
        """Raise ValueError naming the first unusable value (checked at start-up, before any test).

        Example:
            >>> LesionOptions(n_random=1).check()
            Traceback (most recent call last):
            ...
            ValueError: n_random=1: needs at least 2 random sets
        """
        ints = {"n_random": 2, "batch_size": 1, "min_selected": 1, "min_images": 1, "max_images": 1, "seed": 0,
                "sequential": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                what = "random sets" if name == "n_random" else "a whole number"
                raise ValueError(f"{name}={v}: needs at least {low} {what}" if name == "n_random" else
                                 f"{name}={v}: must be {what} >= {low}")
        zooms = tuple(self.zooms)
        if not zooms or any(not isinstance(z, (int, float)) or not 1.0 <= float(z) <= 4.0 for z in zooms):
            raise ValueError(f"zooms={zooms}: must be zoom factors in [1, 4], e.g. zooms=1,1.25,1.5,2")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={self.precision}: must be fp32 or bf16")
        if self.blocks is not None and (not self.blocks or not all(isinstance(b, str) and b for b in self.blocks)):
            raise ValueError(f"blocks={self.blocks}: must be block names, e.g. blocks=layer2.1,layer3.1")
        return self


@dataclass(frozen=True)
class BlockPlan:
    """The channel sets to lesion in one block, or (``note``) why the block is not run.

    ``selected`` (S*) and ``anti`` are channel indices, ``random_sets`` an ``(N, |S*|)`` array.
    """

    block: str
    index: int
    channels: int
    selected: np.ndarray
    anti: np.ndarray
    random_sets: np.ndarray
    note: str = ""


@dataclass(frozen=True)
class LesionRequest:
    """C10's intervention: mean-ablate each plan's sets at each zoom (see :func:`run_lesions`).

    Example:
        >>> data = LesionRequest(LesionOptions(n_random=10), plans).run(env)  # doctest: +SKIP
    """

    options: LesionOptions
    plans: tuple[BlockPlan, ...]
    #: ``stop(zooms, intact, selected, random_so_far) -> bool`` ends a block's random sets early (the
    #: claim's sequential test); it must be hashable (a frozen dataclass), as it is part of the key.
    stop: Callable[..., bool] | None = None
    #: Probe rows the lesions are scored on (their labeled images); ``None``: every probe image.
    score_rows: np.ndarray | None = None
    #: Probe rows the sets were selected on (recorded, never scored).
    select_rows: np.ndarray | None = None
    #: Blocks that may stop early (certain to fail) before the claim can no longer hold; the rest are then
    #: not run. ``None``: run every block.
    max_stopped: int | None = None

    @property
    def key(self) -> tuple:
        """Options, stopping rule and a digest of every channel set (arrays are not hashable)."""
        h = hashlib.sha256()
        for rows in (self.score_rows, self.select_rows):
            h.update(b"-" if rows is None else np.ascontiguousarray(rows, np.int64).tobytes() + b"|")
        for p in self.plans:
            h.update(f"{p.block}|{p.index}|{p.channels}|{p.note}".encode())
            for a in (p.selected, p.anti, p.random_sets):
                h.update(np.ascontiguousarray(a, np.int64).tobytes() + str(np.shape(a)).encode())
        return ("lesion", self.options, self.stop, self.max_stopped, h.hexdigest())

    def run(self, env: InterventionEnv) -> "LesionData":
        return run_lesions(env, self)


@dataclass(frozen=True)
class BlockLesion:
    """One ablation block: its sets and per-image correctness ``(Z, n)`` / ``(N, Z, n)`` (bool).

    ``note`` says why the block was not run (then the correctness arrays are ``None``).
    """

    block: str
    index: int
    channels: int
    selected: np.ndarray
    anti: np.ndarray
    random_sets: np.ndarray
    values: np.ndarray | None = None
    correct_selected: np.ndarray | None = None
    correct_anti: np.ndarray | None = None
    correct_random: np.ndarray | None = None
    note: str = ""
    correct_intact: np.ndarray | None = None  # the intact model through this block's tail (Z, n)


@dataclass(frozen=True)
class LesionData:
    """Everything C10 reads (numpy only). ``status`` is ``ok``, ``not_applicable`` or ``inconclusive``."""

    zooms: tuple[float, ...]
    labels: np.ndarray
    intact: np.ndarray | None  # (Z, n) bool
    blocks: tuple[BlockLesion, ...]
    seed: int
    n_random: int  # random sets planned per block (each block's correct_random has those that ran)
    status: str = "ok"
    reason: str = ""
    forwards: Mapping[str, int] = field(default_factory=dict)
    sequential: int = 0  # h of the sequential test the random sets were run under (0: all N ran)
    scored_rows: np.ndarray | None = None  # probe rows of the scored (labeled) images, in order
    select_rows: np.ndarray | None = None  # probe rows the sets were selected on

    @classmethod
    def skipped(cls, status: str, reason: str, opts: LesionOptions, **kw) -> "LesionData":
        """A LesionData that carries only a verdict and its reason (no forward pass was run)."""
        return cls(tuple(opts.zooms), np.zeros(0, np.int64), None, (), opts.seed, opts.n_random,
                   status, reason, **kw)


def default_ablation_blocks(rmap) -> list:
    """The pre-registered ablation blocks (W9): the last block of every stage but the first and last.

    Stages are runs of consecutive blocks with the same spatial size. Four stages give the
    papers' blocks (layer2.1 and layer3.1 of ResNet18); three give the middle stage's last
    block; two give the first stage's last block; one stage gives its middle block.

    Example:
        >>> [b.name for b in default_ablation_blocks(rmap)]  # doctest: +SKIP
        ['layer2.1', 'layer3.1']
    """
    stages: list[list] = []
    for block in rmap:
        if stages and stages[-1][-1].spatial == block.spatial:
            stages[-1].append(block)
        else:
            stages.append([block])
    if len(stages) >= 3:
        return [s[-1] for s in stages[1:-1]]
    if len(stages) == 2:
        return [stages[0][-1]]
    return [stages[0][len(stages[0]) // 2]] if stages else []


def label_problem(loaded, probe, source: str | None) -> str:
    """Why the probe's labels cannot be scored by the model's outputs (``''`` when they can).

    Example:
        >>> label_problem(load_model("zoo:resnet18-synth96"), embedded_probe(64, 96), None)  # doctest: +SKIP
        ''
    """
    if not (probe.labels >= 0).any():
        return "the probe set has no labeled images; C10 scores top-1 accuracy, so it needs class labels"
    names, probe_names = loaded.class_names, tuple(probe.class_names)
    if names:
        if tuple(names) != probe_names:
            return (f"the probe's classes ({len(probe_names)}: {', '.join(probe_names[:4])}...) are not the model's "
                    f"classes ({len(names)}: {', '.join(tuple(names)[:4])}...); accuracy would be meaningless")
        return ""
    if source is None or str(source) == "embedded":
        return ("the embedded probe's labels are the synthetic shape classes, which only the zoo models were "
                "trained on; pass --resstream-probe with a labeled folder of the model's own classes")
    if len(probe_names) != loaded.num_classes:
        from resstream_assert.stimuli.class_index import CLASS_INDEX_FORM, is_wnid_folder

        if is_wnid_folder(probe_names) and len(probe_names) < loaded.num_classes:
            # Sorted WordNet ids are an ImageNet model's class order only when every class is there.
            return (f"the probe folder has {len(probe_names)} WordNet-id class folders ({', '.join(probe_names[:2])}"
                    f", ...) of the model's {loaded.num_classes} classes, so their sorted order is not the model's "
                    "class order; map them with --resstream-class-index FILE (Python: class_index=), a JSON file "
                    f"like torchvision's imagenet_class_index.json: {CLASS_INDEX_FORM}")
        return (f"the probe has {len(probe_names)} classes but the model has {loaded.num_classes} outputs; labels "
                "(sorted folder names) cannot index its outputs: give a folder with one class folder per output, or "
                "map the folders with --resstream-class-index FILE")
    return ""


class _Stop:
    """Called after each group of sets: stop at once when the intact model is at chance (first block),
    else when the claim's sequential rule says the block's outcome is clear."""

    def __init__(self, rule, zooms, labels: np.ndarray, first: int, check_chance: bool):
        self.rule, self.zooms, self.labels, self.first, self.check_chance = rule, zooms, labels, first, check_chance

    def __call__(self, corr: np.ndarray, intact: np.ndarray) -> bool:
        if self.check_chance and at_chance(intact[0], self.labels):
            return True
        self.check_chance = False
        return self.rule is not None and len(corr) > self.first and \
            bool(self.rule(self.zooms, intact, corr[0], corr[self.first:]))


def _scored(env: InterventionEnv, request: LesionRequest) -> tuple:
    """The labeled probe images the lesions are scored on (of ``request.score_rows``), capped, and their rows."""
    rows = np.arange(len(env.probe)) if request.score_rows is None else np.asarray(request.score_rows, np.int64)
    rows = rows[env.probe.labels[rows] >= 0][:request.options.max_images]
    return env.probe.subset(rows), rows


def run_lesions(env: InterventionEnv, request: LesionRequest) -> LesionData:
    """Run C10's lesions: each plan's S*, anti and random sets at every zoom, on the scored labeled probe images.

    Returns a :class:`LesionData` whose ``status`` says when C10 is not applicable or
    inconclusive (no pass is run then): another backend than torch, NC-rand, labels that
    do not fit the model's classes, too few labeled images, or a model at chance. Once more
    blocks than ``request.max_stopped`` stopped early (each certain to fail), the claim cannot
    hold any more and the remaining blocks are not run (their note says so).

    Example:
        >>> data = run_lesions(env, LesionRequest(LesionOptions(), plans))  # doctest: +SKIP
        >>> data.blocks[0].correct_random.shape  # doctest: +SKIP
        (40, 2, 224)
    """
    opts = request.options
    zooms = tuple(sorted({1.0, *map(float, opts.zooms)}))
    counters: dict = {}
    loaded = env.loaded
    skip = lambda status, why: LesionData.skipped(status, why, opts, forwards=counters)  # noqa: E731
    if loaded.backend != "torch":
        return skip("not_applicable", f"lesions run on the torch backend only (this is {loaded.backend}); "
                                      "run the same model with the torch backend")
    if loaded.control == "nc-rand":
        return skip("not_applicable", "NC-rand (re-initialized weights) is at chance; lesion damage is undefined")
    why = label_problem(loaded, env.probe, env.probe_source)
    if why:
        return skip("not_applicable", why)
    lab, rows = _scored(env, request)
    if len(lab) < opts.min_images:
        return skip("inconclusive", f"{len(lab)} labeled probe images to score on < {opts.min_images}; raise "
                                    "--resstream-images")
    out: list[BlockLesion] = []
    intact = None
    stopped: list[str] = []
    for plan in request.plans:
        if plan.note or (request.max_stopped is not None and len(stopped) > request.max_stopped):
            note = plan.note or (f"not run: the claim cannot hold any more ({', '.join(stopped)} stopped "
                                 "non-significant)")
            out.append(BlockLesion(plan.block, plan.index, plan.channels, plan.selected, plan.anti,
                                   plan.random_sets, note=note))
            continue
        lesion = _run_block(env, request, plan, zooms, lab, intact is None, counters)
        if isinstance(lesion, str):  # at chance (NC-rand and the like): lesion damage means nothing
            return skip("not_applicable", lesion)
        intact = lesion.correct_intact if intact is None else intact
        if lesion.correct_random is not None and len(lesion.correct_random) < len(plan.random_sets):
            stopped.append(plan.block)
        out.append(lesion)
    return LesionData(zooms, lab.labels.copy(), intact, tuple(out), opts.seed, opts.n_random, forwards=counters,
                      sequential=opts.sequential if request.stop is not None else 0, scored_rows=rows,
                      select_rows=request.select_rows)


def _run_block(env, request: LesionRequest, plan: BlockPlan, zooms, lab, first_block: bool,
               counters: dict) -> "BlockLesion | str":
    """One block's lesions (a :class:`BlockLesion`), or why the model is at chance (first block only)."""
    opts = request.options
    block = env.rmap[plan.index]
    sets = [plan.selected] + ([plan.anti] if len(plan.anti) else []) + list(plan.random_sets)
    env.say(f"[resstream] C10 lesions of {block.name}: up to {len(sets)} channel sets x {len(zooms)} zooms x "
            f"{len(lab)} images ...")
    start = time.perf_counter()
    first = 1 + bool(len(plan.anti))  # rows of `sets` before the random ones
    stop = _Stop(request.stop, zooms, lab.labels, first, check_chance=first_block)
    corr, intact_b, vals, mode = lesion_correctness(env.loaded, env.rmap, block, lab.images, lab.labels,
                                                    zooms, sets, device=env.device, batch_size=opts.batch_size,
                                                    counters=counters, stop=stop, precision=opts.precision,
                                                    group=max(1, opts.sequential) if request.stop else 8)
    chance = at_chance(intact_b[0], lab.labels) if first_block else ""  # zooms[0] is 1
    if chance:
        return chance
    ran = len(corr) - first
    env.say(f"[resstream] C10 lesions of {block.name}: done in {time.perf_counter() - start:.0f} s "
            f"({mode} forwards; {ran} of {len(plan.random_sets)} random sets"
            f"{', stopped early: the outcome was clear' if ran < len(plan.random_sets) else ''})")
    counters[f"mode:{block.name}"] = 1 if mode == "tail" else 0
    has_anti = bool(len(plan.anti))
    return BlockLesion(plan.block, plan.index, plan.channels, plan.selected, plan.anti, plan.random_sets,
                       vals, corr[0], corr[1] if has_anti else None, corr[1 + has_anti:], "", intact_b)
