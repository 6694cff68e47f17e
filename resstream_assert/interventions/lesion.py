"""Mean-ablation lesions of one block's residual stream under zoom (C10), run fast by cutting the graph.

A lesion sets channels of a block's ``resid_sum`` (the pre-activation sum) to a constant
per channel, the same at every position and for every image: the mean over the labeled
probe images of ``ReLU(center unit)`` at zoom 1 (spec §2.9; W12 a, b are kept as the
papers did them). We record, per image, whether the top-1 prediction is still right.

Which channels to lesion is the claim's business (``claims/ablation.py`` builds a
:class:`LesionRequest` of :class:`BlockPlan` s from the measures); this module runs them.

Speed matters: C10 needs (2 + N) lesion sets x zooms x images forward passes. The FX graph
is cut at the ``resid_sum`` node: the *head* (input -> resid_sum) runs once per zoom and
its feature maps are kept; each lesion set then runs only the *tail* (resid_sum -> logits),
with several sets stacked in one batch. A graph where another tensor crosses the cut falls
back to full forwards with an edit at the site. torch is imported lazily; the request and
result types are numpy only, so claims read them without torch.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Mapping, Sequence

import numpy as np

from resstream_assert.interventions import InterventionEnv
from resstream_assert.stats import at_chance

#: Zooms of C10 (1.0 first: ΔD is measured from it).
DEFAULT_ZOOMS: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)


@dataclass(frozen=True)
class LesionOptions:
    """Knobs of the lesion run (``--resstream-lesion KEY=VALUE`` sets them).

    ``blocks=None`` means the pre-registered default (:func:`default_ablation_blocks`).
    ``batch_size`` counts images per tail call (sets x images stacked).

    Example:
        >>> LesionOptions.from_mapping({"n_random": 200}).n_random
        200
    """

    blocks: tuple[str, ...] | None = None
    zooms: tuple[float, ...] = DEFAULT_ZOOMS
    n_random: int = 100
    seed: int = 0
    batch_size: int = 256
    min_selected: int = 3
    min_images: int = 50
    max_images: int = 512  # lesion runs cost N_random x images: beyond this, the first labeled images are used
    sequential: int = 10  # stop a block's random sets at this many exceedances (Besag-Clifford); 0: run all N

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

    @property
    def key(self) -> tuple:
        """Options, stopping rule and a digest of every channel set (arrays are not hashable)."""
        h = hashlib.sha256()
        for p in self.plans:
            h.update(f"{p.block}|{p.index}|{p.channels}|{p.note}".encode())
            for a in (p.selected, p.anti, p.random_sets):
                h.update(np.ascontiguousarray(a, np.int64).tobytes() + str(np.shape(a)).encode())
        return ("lesion", self.options, self.stop, h.hexdigest())

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


class _Runner:
    """Runs lesion sets of one block: head once per zoom, then the tail (or full forwards) per set group."""

    def __init__(self, loaded, rmap, block, device: str, batch_size: int, counters: dict, engine: str = "torch"):
        import torch

        from resstream_assert.capture.torch_fx import instrument, normalizer
        from resstream_assert.discovery.torch_graph import block_nodes, split_at

        self.torch, self.dev = torch, torch.device(device)
        module = loaded.module.eval().to(self.dev)
        self.norm = normalizer(loaded.mean, loaded.std, self.dev)
        self.head, self.tail = split_at(module, block_nodes(module)[block.index].resid_sum)
        self.batch, self.counters = batch_size, counters
        self.engine = "torch"
        if engine == "onnxruntime" and self.tail is not None and self.dev.type == "cpu":
            self._to_onnxruntime(loaded, block)
        self.state: dict = {}
        if self.tail is None:  # full forwards; the edit reads the current set group from self.state
            self.full, _ = instrument(module, rmap, sites=(), edits={(block.index, "resid_sum"): self._edit})
            self.batch = max(1, batch_size // 4)  # whole-network activations are larger

    def _to_onnxruntime(self, loaded, block) -> None:
        """Head and tail run by onnxruntime (exported once per model, block and size); torch if export fails."""
        from resstream_assert.errors import BackendUnavailable
        from resstream_assert.loading.onnx_export import onnx_callable

        size = loaded.input_size
        x = self.norm(self.torch.zeros(2, 3, size, size))
        name = f"lesion-{loaded.digest[:16]}-{block.index}-{size}px"
        try:
            with self.torch.no_grad():  # not inference_mode: the export traces in-place ops on this tensor
                cut = self.head(x)
            self.head, self.tail = onnx_callable(self.head, x, f"{name}-head"), onnx_callable(self.tail, cut,
                                                                                            f"{name}-tail")
            self.engine = "onnxruntime"
        except BackendUnavailable:
            pass

    def _count(self, kind: str, n: int) -> None:
        self.counters[f"{kind}_batches"] = self.counters.get(f"{kind}_batches", 0) + 1
        self.counters[f"{kind}_images"] = self.counters.get(f"{kind}_images", 0) + n

    def _edit(self, t):
        masks, values = self.state["masks"], self.state["values"]
        g = masks.shape[0]
        out = self.torch.where(masks[:, None, :, None, None], values[None, None, :, None, None],
                               t.reshape(g, -1, *t.shape[1:]))
        return out.reshape(t.shape)

    def inputs(self, images: np.ndarray, zoom: float, head_batch: int = 64):
        """Normalized, zoomed images through the head: (n, C, H, W) cut features (or images in full mode)."""
        from resstream_assert.stimuli.variants import apply_variant, zoom_variant

        out = []
        with self.torch.inference_mode():
            for i in range(0, len(images), head_batch):
                x = self.torch.as_tensor(images[i:i + head_batch], device=self.dev).float() / 255
                if zoom != 1.0:
                    x = apply_variant(x, zoom_variant(zoom))
                x = self.norm(x)
                if self.tail is not None:
                    x = self.head(x)
                    self._count("head", len(x))
                out.append(x)
        return self.torch.cat(out)

    def values(self, images: np.ndarray, feats=None, head_batch: int = 64) -> np.ndarray:
        """Per channel, the mean over ``images`` of ReLU(center unit of resid_sum) at zoom 1 (spec §2.9).

        ``feats`` are the zoom-1 cut features when already computed (saves a head pass).
        """
        total = 0.0
        with self.torch.inference_mode():
            for i in range(0, len(images), head_batch):
                if feats is not None:
                    f = feats[i:i + head_batch]
                else:
                    x = self.torch.as_tensor(images[i:i + head_batch], device=self.dev).float() / 255
                    f = self.head(self.norm(x))
                    self._count("head", len(f))
                total = total + f[:, :, f.shape[2] // 2, f.shape[3] // 2].double().clamp_min(0).sum(0).cpu().numpy()
        return np.asarray(total / len(images), np.float64)

    def predict(self, feats, masks: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Top-1 predictions ``(n_sets, n)`` with each row of ``masks`` (n_sets, C) mean-ablated."""
        torch = self.torch
        n = len(feats)
        m_all = torch.as_tensor(masks, device=self.dev)
        v = torch.as_tensor(values, dtype=torch.float32, device=self.dev)
        chunk = min(n, self.batch)
        group = max(1, self.batch // chunk)  # sets stacked per call when the images fit several times
        preds = np.empty((len(masks), n), np.int64)
        with torch.inference_mode():
            for g0 in range(0, len(masks), group):
                m = m_all[g0:g0 + group]
                for i in range(0, n, chunk):
                    x = feats[i:i + chunk]
                    nb = len(x)
                    if self.tail is not None:
                        # torch.where builds a fresh tensor: the tail's in-place ReLU cannot touch the cache.
                        x = torch.where(m[:, None, :, None, None], v[None, None, :, None, None], x[None])
                        y = self.tail(x.reshape(-1, *x.shape[2:]))
                        self._count("tail", y.shape[0])
                    else:
                        self.state.update(masks=m, values=v)
                        y = self.full(x.repeat(len(m), 1, 1, 1))
                        self._count("full", y.shape[0])
                    preds[g0:g0 + len(m), i:i + nb] = y.argmax(1).reshape(len(m), -1).cpu().numpy()
        return preds


def lesion_correctness(loaded, rmap, block, images: np.ndarray, labels: np.ndarray, zooms: Sequence[float],
                       sets: Sequence[np.ndarray], *, values: np.ndarray | None = None, device: str = "cpu",
                       batch_size: int = 256, counters: dict | None = None,
                       stop: Callable[[np.ndarray, np.ndarray], bool] | None = None, group: int = 8,
                       engine: str = "torch"):
    """Per-image correctness under each mean-ablation set and zoom, plus the intact model's.

    ``images`` are uint8 ``(n, 3, H, W)``; ``sets`` channel-index arrays of ``block``;
    ``values`` the per-channel ablation values (default: mean ReLU center unit at zoom 1
    over ``images``). Returns ``(correct (n_run, Z, n), intact (Z, n), values, mode)``
    with ``mode`` ``"tail"`` (graph cut) or ``"full"`` (fallback).

    The head runs once per zoom; then the sets run in order, ``group`` at a time over every
    zoom, and after each group ``stop(correct_so_far, intact)`` may end the run (a sequential
    Monte-Carlo test): then ``n_run < len(sets)``. Without ``stop`` every set runs.
    ``engine="onnxruntime"`` runs the head and tail through onnxruntime (CPU; torch if export fails).

    Example:
        >>> c, intact, v, mode = lesion_correctness(loaded, rmap, rmap["layer2.1"], imgs, y,
        ...                                         (1.0, 2.0), [np.array([3, 7])])  # doctest: +SKIP
        >>> c.shape, intact.shape  # doctest: +SKIP
        ((1, 2, 448), (2, 448))
    """
    counters = {} if counters is None else counters
    run = _Runner(loaded, rmap, block, device, batch_size, counters, engine)
    zs = [float(z) for z in zooms]
    feats: list = [None] * len(zs)
    for z in sorted(range(len(zs)), key=lambda i: zs[i] != 1.0):  # zoom 1 first: it gives the values
        feats[z] = run.inputs(images, zs[z])
        if values is None:
            values = run.values(images, feats[z] if run.tail is not None and zs[z] == 1.0 else None)
    masks = np.zeros((len(sets) + 1, block.channels), bool)  # row 0: the empty lesion (intact model)
    for i, s in enumerate(sets):
        masks[i + 1, np.asarray(s, np.int64)] = True
    labels = np.asarray(labels)
    correct = np.empty((len(masks), len(zs), len(images)), bool)
    done, step = 0, len(masks) if stop is None else max(1, group)
    while done < len(masks):
        rows = slice(done, min(len(masks), done + step))
        for z in range(len(zs)):
            correct[rows, z] = run.predict(feats[z], masks[rows], values) == labels[None]
        done = rows.stop
        if stop is not None and done < len(masks) and stop(correct[1:done], correct[0]):
            break
    mode = "full" if run.tail is None else ("tail, onnxruntime" if run.engine == "onnxruntime" else "tail")
    return correct[1:done], correct[0], values, mode


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
        return (f"the probe folder has {len(probe_names)} class folders but the model has {loaded.num_classes} "
                "outputs; labels (sorted folder names) cannot index its outputs")
    return ""


def run_lesions(env: InterventionEnv, request: LesionRequest) -> LesionData:
    """Run C10's lesions: each plan's S*, anti and random sets at every zoom, on the labeled probe images.

    Returns a :class:`LesionData` whose ``status`` says when C10 is not applicable or
    inconclusive (no pass is run then): another backend than torch, NC-rand, labels that
    do not fit the model's classes, too few labeled images, or a model at chance.

    Example:
        >>> data = run_lesions(env, LesionRequest(LesionOptions(), plans))  # doctest: +SKIP
        >>> data.blocks[0].correct_random.shape  # doctest: +SKIP
        (100, 4, 448)
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
    lab = env.probe.labeled()
    if len(lab) > opts.max_images:  # the embedded probe's labels cycle through the classes, so a prefix is balanced
        lab = lab.subset(np.arange(opts.max_images))
    if len(lab) < opts.min_images:
        return skip("inconclusive", f"{len(lab)} labeled probe images < {opts.min_images}; raise --resstream-images")
    out, intact = [], None
    for plan in request.plans:
        if plan.note:
            out.append(BlockLesion(plan.block, plan.index, plan.channels, plan.selected, plan.anti,
                                   plan.random_sets, note=plan.note))
            continue
        block = env.rmap[plan.index]
        sets = [plan.selected] + ([plan.anti] if len(plan.anti) else []) + list(plan.random_sets)
        if intact is None:  # cheap precheck: at chance, lesion damage means nothing (NC-rand and the like)
            _, pre, _, _ = lesion_correctness(loaded, env.rmap, block, lab.images, lab.labels, (1.0,), [],
                                              values=np.zeros(block.channels), device=env.device,
                                              batch_size=opts.batch_size, counters=counters)
            chance = at_chance(pre[0], lab.labels)
            if chance:
                return skip("not_applicable", chance)
        env.say(f"[resstream] C10 lesions of {block.name}: {len(sets)} channel sets x {len(zooms)} zooms x "
                f"{len(lab)} images ...")
        start = time.perf_counter()
        first = 1 + bool(len(plan.anti))  # rows of `sets` before the random ones
        stop = None if request.stop is None else \
            (lambda corr, intact_: len(corr) > first and request.stop(zooms, intact_, corr[0], corr[first:]))
        corr, intact_b, vals, mode = lesion_correctness(loaded, env.rmap, block, lab.images, lab.labels, zooms, sets,
                                                        device=env.device, batch_size=opts.batch_size,
                                                        counters=counters, stop=stop, engine=env.engine)
        ran = len(corr) - first
        env.say(f"[resstream] C10 lesions of {block.name}: done in {time.perf_counter() - start:.0f} s "
                f"({mode} forwards; {ran} of {len(plan.random_sets)} random sets"
                f"{', stopped early: the outcome was clear' if ran < len(plan.random_sets) else ''})")
        counters[f"mode:{block.name}"] = 0 if mode == "full" else 1
        intact = intact_b if intact is None else intact
        has_anti = bool(len(plan.anti))
        out.append(BlockLesion(plan.block, plan.index, plan.channels, plan.selected, plan.anti, plan.random_sets,
                               vals, corr[0], corr[1] if has_anti else None, corr[1 + has_anti:], "", intact_b))
    return LesionData(zooms, lab.labels.copy(), intact, tuple(out), opts.seed, opts.n_random, forwards=counters,
                      sequential=opts.sequential if request.stop is not None else 0)
