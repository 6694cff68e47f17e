"""Mean-ablation lesions of one block's residual stream, run fast by cutting the graph (C10, C11).

A lesion sets channels of a block's ``resid_sum`` (the pre-activation sum) to a constant
per channel, the same at every position and for every image: the mean over the labeled
probe images of ``ReLU(center unit)`` at zoom 1 (spec §2.9; W12 a, b are kept as the
papers did them). We record, per image, whether the top-1 prediction is still right.

Speed matters: C10 needs (2 + N) lesion sets x zooms x images forward passes. The FX graph
is cut at the ``resid_sum`` node: the *head* (input -> resid_sum) runs once per zoom and
its feature maps are kept; each lesion set then runs only the *tail* (resid_sum -> logits),
with several sets stacked in one batch. A graph where another tensor crosses the cut falls
back to full forwards with an edit at the site. Only this module imports torch (lazily);
``LesionData`` is numpy only, so claims read it without torch.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field, fields
from typing import Mapping, Sequence

import numpy as np

#: Zooms of C10 (1.0 first: ΔD is measured from it).
DEFAULT_ZOOMS: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)


@dataclass(frozen=True)
class LesionOptions:
    """Knobs of the lesion run; ``RunConfig.claim_options`` keys ``lesion_<field>`` set them.

    ``blocks=None`` means the pre-registered default (:func:`default_ablation_blocks`).
    ``batch_size`` counts images per tail call (sets x images stacked).

    Example:
        >>> LesionOptions.from_mapping({"lesion_n_random": 200, "alpha": 0.01}).n_random
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
    claims: tuple[str, ...] = ("C10", "C11")

    @classmethod
    def from_mapping(cls, mapping: Mapping | None, **defaults) -> "LesionOptions":
        """Read ``lesion_*`` keys (other keys are ignored); unknown ``lesion_*`` keys raise."""
        names = {f.name for f in fields(cls)}
        kw = dict(defaults)
        for key, value in (mapping or {}).items():
            if not str(key).startswith("lesion_"):
                continue
            name = key[len("lesion_"):]
            if name not in names:
                known = ", ".join("lesion_" + n for n in sorted(names))
                raise ValueError(f"Unknown lesion option {key!r}; known: {known}.")
            kw[name] = tuple(value) if isinstance(value, list) else value
        return cls(**kw)


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
class ReferenceData:
    """C11 inputs: top-1 accuracies (fractions) on a labeled ImageNet-val folder."""

    n_images: int
    acc_empty: float
    acc_lesion: Mapping[str, float]


@dataclass(frozen=True)
class LesionData:
    """Everything C10/C11 read (numpy only). ``status`` is ``ok``, ``not_applicable`` or ``inconclusive``."""

    zooms: tuple[float, ...]
    labels: np.ndarray
    intact: np.ndarray | None  # (Z, n) bool
    blocks: tuple[BlockLesion, ...]
    seed: int
    n_random: int
    status: str = "ok"
    reason: str = ""
    forwards: Mapping[str, int] = field(default_factory=dict)
    reference: ReferenceData | None = None
    reference_reason: str = "C11 was not requested"

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


def split_at(module, node_name: str):
    """Cut ``module``'s FX graph at ``node_name``: ``(head, tail)``; ``tail`` is None if tensors cross the cut.

    ``head(x)`` returns the node's value; ``tail(v)`` runs the rest of the network on it.
    Parameters (``get_attr``) may cross; any other live tensor makes the cut invalid.

    Example:
        >>> head, tail = split_at(resnet18, "add_3")  # doctest: +SKIP
        >>> torch.allclose(tail(head(x)), resnet18(x))  # doctest: +SKIP
        True
    """
    import torch.fx as fx

    from resstream_assert.discovery.torch_graph import trace

    traced = trace(module)
    nodes = list(traced.gm.graph.nodes)
    cut = next(i for i, n in enumerate(nodes) if n.name == node_name)
    head_graph, env = fx.Graph(), {}
    for n in nodes[:cut + 1]:
        env[n] = head_graph.node_copy(n, lambda a: env[a])
    head_graph.output(env[nodes[cut]])
    head = fx.GraphModule(traced.gm, head_graph)
    before = set(nodes[:cut + 1])
    tail_graph = fx.Graph()
    tenv = {nodes[cut]: tail_graph.placeholder("resid_sum")}
    for n in nodes[cut + 1:]:
        for a in n.all_input_nodes:
            if a in tenv:
                continue
            if a in before and a.op == "get_attr":
                tenv[a] = tail_graph.node_copy(a)
            else:
                return head, None  # e.g. a skip over the cut: the tail would need more than resid_sum
        tenv[n] = tail_graph.node_copy(n, lambda a: tenv[a])
    return head, fx.GraphModule(traced.gm, tail_graph)


class _Runner:
    """Runs lesion sets of one block: head once per zoom, then the tail (or full forwards) per set group."""

    def __init__(self, loaded, rmap, block, device: str, batch_size: int, counters: dict):
        import torch

        from resstream_assert.capture.torch_fx import instrument, normalizer
        from resstream_assert.discovery.torch_graph import block_nodes

        self.torch, self.dev = torch, torch.device(device)
        module = loaded.module.eval().to(self.dev)
        self.norm = normalizer(loaded.mean, loaded.std, self.dev)
        self.head, self.tail = split_at(module, block_nodes(module)[block.index].resid_sum)
        self.batch, self.counters = batch_size, counters
        self.state: dict = {}
        if self.tail is None:  # full forwards; the edit reads the current set group from self.state
            self.full, _ = instrument(module, rmap, sites=(), edits={(block.index, "resid_sum"): self._edit})
            self.batch = max(1, batch_size // 4)  # whole-network activations are larger

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
                       batch_size: int = 256, counters: dict | None = None):
    """Per-image correctness under each mean-ablation set and zoom, plus the intact model's.

    ``images`` are uint8 ``(n, 3, H, W)``; ``sets`` channel-index arrays of ``block``;
    ``values`` the per-channel ablation values (default: mean ReLU center unit at zoom 1
    over ``images``). Returns ``(correct (n_sets, Z, n), intact (Z, n), values, mode)``
    with ``mode`` ``"tail"`` (graph cut) or ``"full"`` (fallback).

    Example:
        >>> c, intact, v, mode = lesion_correctness(loaded, rmap, rmap["layer2.1"], imgs, y,
        ...                                         (1.0, 2.0), [np.array([3, 7])])  # doctest: +SKIP
        >>> c.shape, intact.shape  # doctest: +SKIP
        ((1, 2, 448), (2, 448))
    """
    counters = {} if counters is None else counters
    run = _Runner(loaded, rmap, block, device, batch_size, counters)
    masks = np.zeros((len(sets) + 1, block.channels), bool)  # row 0: the empty lesion (intact model)
    for i, s in enumerate(sets):
        masks[i + 1, np.asarray(s, np.int64)] = True
    labels = np.asarray(labels)
    correct = np.empty((len(masks), len(zooms), len(images)), bool)
    order = sorted(range(len(zooms)), key=lambda z: float(zooms[z]) != 1.0)  # zoom 1 first: it gives the values
    for z in order:
        feats = run.inputs(images, float(zooms[z]))
        if values is None:
            values = run.values(images, feats if run.tail is not None and float(zooms[z]) == 1.0 else None)
        correct[:, z] = run.predict(feats, masks, values) == labels[None]
        del feats
    return correct[1:], correct[0], values, ("tail" if run.tail is not None else "full")


def resolve_options(options, config) -> LesionOptions:
    """A :class:`LesionOptions` from what the orchestrator has: itself, a mapping, a ``ClaimOptions`` or None.

    ``lesion_*`` keys of ``config.claim_options`` apply first, then a mapping's; the run's
    seed and ``ClaimOptions.min_images`` are the defaults for ``seed`` and ``min_images``.

    Example:
        >>> resolve_options({"lesion_n_random": 10}, RunConfig()).n_random  # doctest: +SKIP
        10
    """
    if isinstance(options, LesionOptions):
        return options
    merged = {k: v for k, v in (getattr(config, "claim_options", None) or {}).items() if str(k).startswith("lesion_")}
    defaults = {"seed": getattr(config, "seed", 0)}
    if isinstance(options, Mapping):
        merged.update(options)
    elif options is not None:  # a ClaimOptions: borrow its image floor, and a `lesion` mapping if it grows one
        if hasattr(options, "min_images"):
            defaults["min_images"] = options.min_images
        merged.update({f"lesion_{k}": v for k, v in (getattr(options, "lesion", None) or {}).items()})
    return LesionOptions.from_mapping(merged, **defaults)


def _label_problem(loaded, probe, source) -> str:
    """Why the probe's labels cannot be scored by the model's outputs ('' when they can)."""
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


def lesion_context_data(workbench, spec: str, backend: str, rmap, measures, options=None):
    """Run the C10 (and, when requested and applicable, C11) lesions; the orchestrator's hook for ``ctx.lesion``.

    ``measures`` are the model's ``BlockMeasures`` (with S/Sinv scale quantities);
    ``options`` a :class:`LesionOptions`, a mapping of ``lesion_*`` keys, or None (read
    from ``workbench.config.claim_options``). Returns a :class:`LesionData` whose
    ``status`` says when C10 is not applicable or inconclusive (no pass is run then).

    Example:
        >>> data = lesion_context_data(wb, "zoo:resnet18-synth96", "torch", rmap, measures)  # doctest: +SKIP
        >>> ctx = ClaimContext(..., lesion=data)  # doctest: +SKIP
    """
    from resstream_assert.claims.ablation import at_chance
    from resstream_assert.measures import MIX

    cfg = workbench.config
    opts = resolve_options(options, cfg)
    zooms = tuple(sorted({1.0, *map(float, opts.zooms)}))
    counters: dict = {}
    ref, ref_reason = None, "C11 was not requested"
    if backend != "torch":
        return LesionData.skipped("not_applicable", f"lesions run on the torch backend only (this is {backend}); "
                                  "run the same model with the torch backend", opts)
    loaded = workbench.model(spec, backend)
    if "C11" in opts.claims:
        from resstream_assert.capture.lesion_reference import reference_data

        ref, ref_reason = reference_data(loaded, rmap, cfg.probe, device=cfg.device, counters=counters)
    if "C10" not in opts.claims:
        return LesionData.skipped("not_applicable", "C10 was not requested", opts, reference=ref,
                                  reference_reason=ref_reason, forwards=counters)
    skip = lambda status, why: LesionData.skipped(status, why, opts, reference=ref,  # noqa: E731
                                                  reference_reason=ref_reason, forwards=counters)
    if loaded.control == "nc-rand":
        return skip("not_applicable", "NC-rand (re-initialized weights) is at chance; lesion damage is undefined")
    probe = workbench.probe(loaded.input_size)
    why = _label_problem(loaded, probe, cfg.probe)
    if why:
        return skip("not_applicable", why)
    lab = probe.labeled()
    if len(lab) > opts.max_images:  # the embedded probe's labels cycle through the classes, so a prefix is balanced
        lab = lab.subset(np.arange(opts.max_images))
    if len(lab) < opts.min_images:
        return skip("inconclusive", f"{len(lab)} labeled probe images < {opts.min_images}; raise --resstream-images")
    names = opts.blocks or tuple(b.name for b in default_ablation_blocks(rmap))
    by_index = {m.index: m for m in measures}
    out, intact = [], None
    for name in names:
        block = rmap[name]
        bm = by_index.get(block.index)
        sm_b = None if bm is None else bm.scale.get("sm_b")
        if sm_b is None:
            out.append(BlockLesion(block.name, block.index, block.channels, *(np.zeros(0, np.int64),) * 2,
                                   np.zeros((0, 0), np.int64), note="no SM_B (needs the S and Sinv variants)"))
            continue
        mix = bm.category("p2") == MIX
        with np.errstate(invalid="ignore"):
            sel, anti = np.flatnonzero((sm_b > 0) & mix), np.flatnonzero((sm_b < 0) & mix)
        pool = np.setdiff1d(np.arange(block.channels), sel)
        k = len(sel)
        rng = np.random.default_rng([opts.seed, zlib.crc32(b"C10"), block.index + 1])
        rand = np.stack([np.sort(rng.choice(pool, k, replace=False)) for _ in range(opts.n_random)]) \
            if 0 < k <= len(pool) else np.zeros((0, k), np.int64)
        if len(anti) > k:  # equal size to S*, so the comparison with the random sets is fair
            anti = np.sort(rng.choice(anti, k, replace=False))
        note = (f"{k} selected channels < {opts.min_selected}" if k < opts.min_selected else
                f"only {len(pool)} non-selected channels for random sets of {k}" if k > len(pool) else "")
        if note:
            out.append(BlockLesion(block.name, block.index, block.channels, sel, anti, rand, note=note))
            continue
        sets = [sel] + ([anti] if len(anti) else []) + list(rand)
        if intact is None:  # cheap precheck: at chance, lesion damage means nothing (NC-rand and the like)
            _, pre, _, _ = lesion_correctness(loaded, rmap, block, lab.images, lab.labels, (1.0,), [],
                                              values=np.zeros(block.channels), device=cfg.device,
                                              batch_size=opts.batch_size, counters=counters)
            chance = at_chance(pre[0], lab.labels)
            if chance:
                return skip("not_applicable", chance)
        log = getattr(workbench, "log", None) or (lambda line: None)
        log(f"[resstream] C10 lesions of {block.name}: {len(sets)} channel sets x {len(zooms)} zooms x "
            f"{len(lab)} images ...")
        start = time.perf_counter()
        corr, intact_b, vals, mode = lesion_correctness(loaded, rmap, block, lab.images, lab.labels, zooms, sets,
                                                        device=cfg.device, batch_size=opts.batch_size,
                                                        counters=counters)
        log(f"[resstream] C10 lesions of {block.name}: done in {time.perf_counter() - start:.0f} s ({mode} forwards)")
        counters[f"mode:{block.name}"] = 1 if mode == "tail" else 0
        intact = intact_b if intact is None else intact
        out.append(BlockLesion(block.name, block.index, block.channels, sel, anti, rand, vals, corr[0],
                               corr[1] if len(anti) else None, corr[1 + bool(len(anti)):], "", intact_b))
    return LesionData(zooms, lab.labels.copy(), intact, tuple(out), opts.seed, opts.n_random,
                      forwards=counters, reference=ref, reference_reason=ref_reason)
