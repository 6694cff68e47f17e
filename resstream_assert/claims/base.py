"""The claim registry, the context a claim is evaluated in, and the per-block -> claim summary.

A claim is data (id, title, source, the stimulus variants it needs, default thresholds,
and, when it must run the model again, the intervention it asks for) plus one function
``evaluate(ctx) -> ClaimResult``. Claims read numpy quantities only; they never run a model.

Verdicts (the one rule, :mod:`.decision`; :mod:`resstream_assert.gate` turns verdicts into test
outcomes): each analysed block gets a test, p-values are Holm-adjusted across blocks, and a
block holds, fails (evidence against) or is inconclusive by where its effect's interval lies
against the claim's :class:`~.decision.Boundary`; the claim holds when ``ceil(mostly x A)`` of
its ``A`` analysed blocks hold. The claim's effect is a random-effects (DerSimonian-Laird)
combination of the block effects with its 95% interval (:mod:`resstream_assert.stats.pooling`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from resstream_assert.claims.decision import Boundary, block_verdict, over_blocks
from resstream_assert.results import BlockRow, ClaimResult, Verdict
from resstream_assert.stats import holm
from resstream_assert.stats.pooling import random_effects, se_from_ci

if TYPE_CHECKING:
    from resstream_assert.capture.responses import Responses
    from resstream_assert.discovery.residual_map import ResidualMap
    from resstream_assert.interventions import Request
    from resstream_assert.measures import BlockMeasures

ZOOM_VARIANTS = ("zoom1.1", "zoom1.2", "zoom1.3", "zoom1.4", "zoom1.5", "zoom1.75", "zoom2.0")


def parse_min_effects(v: Any) -> tuple[tuple[str, float], ...]:
    """``["C3=0.2", "C1=0.1"]`` (or a mapping, or pairs) -> ``(("C1", 0.1), ("C3", 0.2))``; ValueError when malformed.

    Example:
        >>> parse_min_effects(["C3=0.2", "C1=0.1"])
        (('C1', 0.1), ('C3', 0.2))
    """
    if v is None:
        return ()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        raise ValueError(f"{v!r} is not CLAIM=VALUE: each claim has its own units, so name it (e.g. C3=0.2)")
    items = v.items() if isinstance(v, Mapping) else v
    out = {}
    for item in items:
        if isinstance(item, str):
            claim, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not CLAIM=VALUE: each claim has its own units, so name it (e.g. C3=0.2 "
                                 "for |rho| >= 0.2, C1=0.1 for a 10% rarest category)")
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{item!r}: {text!r} is not a number") from None
        else:
            claim, value = item
        claim = str(claim).strip().upper()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{claim}={value!r}: a minimum effect is a finite number >= 0 in the claim's units")
        out[claim] = float(value)
    return tuple(sorted(out.items()))



@dataclass(frozen=True)
class ClaimOptions:
    """Thresholds and resampling sizes shared by all claims (per-claim defaults override ``mostly``).

    Example:
        >>> ClaimOptions(alpha=0.01).with_(mostly=1.0).mostly
        1.0
    """

    alpha: float = 0.05
    mostly: float | None = None  # fraction of analysed blocks that must hold; None = the claim's default
    # The boundary's size in the claim's units, per claim as (claim, value) pairs, or one number for the
    # claim being evaluated (a @pytest.mark.resstream on one claim's test); unset = each claim's own.
    min_effect: float | tuple[tuple[str, float], ...] | None = None
    n_resamples: int = 4999
    n_boot: int = 1000
    min_channels: int = 10
    min_images: int = 50  # top-9 exemplars out of fewer images are not channel-specific
    skip_first_block: bool = True  # the papers never analyse block 1.0 (its input is the stem's max-pool)
    lesion: tuple[tuple[str, Any], ...] = ()  # C10's lesion options as (name, value) pairs (see LesionOptions)
    intervention: tuple[tuple[str, Any], ...] = ()  # X1-X4 options as (name, value) pairs (InterventionOptions)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"claim option {name}={getattr(self, name)!r}: {why}")

        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise bad("alpha", "must be strictly between 0 and 1 (e.g. 0.05)")
        if self.mostly is not None and not (isinstance(self.mostly, (int, float)) and 0 < self.mostly <= 1):
            raise bad("mostly", "must be a fraction in (0, 1] (e.g. 0.5, or 1.0 for every block), or None")
        pairs = self.min_effect if isinstance(self.min_effect, tuple) else \
            (() if self.min_effect is None else (("*", self.min_effect),))
        for _, value in pairs:
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise bad("min_effect", "must be a finite number >= 0 in the claim's units (e.g. C3=0.2)")
        for name, low in (("n_resamples", 99), ("n_boot", 0), ("min_channels", 1), ("min_images", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise bad(name, f"must be a whole number >= {low}")

    def with_(self, **changes) -> "ClaimOptions":
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The threshold names a user may set per test (``@pytest.mark.resstream(...)``, ``check_claim(...)``).

        Example:
            >>> ClaimOptions.keys()[:3]
            ('alpha', 'mostly', 'min_effect')
        """
        return tuple(f.name for f in fields(cls) if f.name not in ("lesion", "intervention"))

    @classmethod
    def from_run(cls, claim_options: Mapping, **overrides) -> "ClaimOptions":
        """Options from a run's ``claim_options`` (unset values left out; ``lesion`` and ``intervention``
        are mappings there).

        Example:
            >>> ClaimOptions.from_run({"alpha": 0.01, "mostly": None, "lesion": {"n_random": 20}}).lesion
            (('n_random', 20),)
        """
        kw = {k: v for k, v in claim_options.items() if v is not None}
        if isinstance(kw.get("min_effect"), (list, tuple, Mapping)):  # per claim: "C3=0.2" texts, or pairs
            kw["min_effect"] = parse_min_effects(kw["min_effect"])
        for name in ("lesion", "intervention"):
            if name in kw:
                kw[name] = tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v)
                                        for k, v in dict(kw[name]).items()))
        return cls(**{**kw, **overrides})


@dataclass(frozen=True)
class ClaimSpec:
    """A registered claim: metadata plus its evaluate function.

    ``needs`` are the stimulus variants whose responses the claim reads. ``prepare``, when
    set, builds from the context the intervention request the claim needs (a claim that
    runs the model again, e.g. C10's lesions); the pipeline runs it and hands the result to
    ``evaluate`` as ``ctx.intervention``. An ``opt_in`` claim (one that costs minutes on a
    CPU) runs only when it is selected by id (``--resstream-claims X3``, ``claims=["X3"]``).
    """

    id: str
    title: str
    source: str
    test: str
    evaluate: Callable[["ClaimContext"], ClaimResult]
    needs: tuple[str, ...] = ("id",)
    mostly: float = 0.5
    gate: bool = True
    prepare: Callable[["ClaimContext"], "Request"] | None = None
    opt_in: bool = False
    boundary: Boundary | None = None


@dataclass(frozen=True)
class ClaimContext:
    """Everything a claim may read: the map, per-block measures, responses (numpy), options, seed.

    The pipeline builds one per model and gives each claim its own copy through
    :meth:`for_claim` (with the claim's spec and its intervention's result).

    Example:
        >>> ctx = ClaimContext("zoo:resnet18-synth96", "torch", rmap, measures, responses)  # doctest: +SKIP
        >>> REGISTRY["C3"].evaluate(ctx.for_claim(REGISTRY["C3"])).verdict  # doctest: +SKIP
    """

    model: str
    backend: str
    rmap: "ResidualMap"
    measures: tuple["BlockMeasures", ...]
    responses: Mapping[str, "Responses"]
    options: ClaimOptions = ClaimOptions()
    seed: int = 0
    spec: ClaimSpec | None = None
    intervention: Any = None  # what spec.prepare's request returned (numpy data), or None

    def for_claim(self, spec: ClaimSpec, intervention: Any = None) -> "ClaimContext":
        """This context for one claim."""
        return replace(self, spec=spec, intervention=intervention)

    @property
    def claim(self) -> ClaimSpec:
        """The claim being evaluated (set by :meth:`for_claim`)."""
        if self.spec is None:
            raise ValueError("this ClaimContext has no claim: use ctx.for_claim(REGISTRY[id])")
        return self.spec

    def boundary(self) -> Boundary | None:
        """The claim's boundary, with its size set by the user's ``min_effect`` for this claim when given.

        Example:
            >>> ctx.for_claim(REGISTRY["C3"]).boundary().delta  # doctest: +SKIP
            -0.1
        """
        b = self.claim.boundary
        given = self.options.min_effect
        size = dict(given).get(self.claim.id) if isinstance(given, tuple) else given
        if b is None or size is None:
            return b
        return replace(b, delta=b.direction * float(size))

    def rng(self, block: int = -1, stream: str = "") -> np.random.Generator:
        """A generator seeded by (seed, claim, block): results never depend on evaluation order."""
        name = self.claim.id + (f"/{stream}" if stream else "")
        return np.random.default_rng([self.seed, zlib.crc32(name.encode()), block + 1])

    def analysed(self) -> list["BlockMeasures"]:
        """The blocks a claim analyses (all but the first by default, as in the papers)."""
        ms = list(self.measures)
        return ms[1:] if self.options.skip_first_block and len(ms) > 1 else ms

    def lacking(self, bm: "BlockMeasures", *needs: str) -> BlockRow | None:
        """A not-applicable row when ``bm`` lacks quantities (``scale``, ``flip``, ``zoom``), else None."""
        why = lacks(bm, *needs)
        return row(bm.block, verdict=Verdict.NOT_APPLICABLE, note=why) if why else None

    def too_few(self, bm: "BlockMeasures", n: int, *, what: str = "defined channels", floor: int | None = None,
                values: Mapping | None = None, suffix: str = "") -> BlockRow | None:
        """An inconclusive row when ``n < floor`` (default ``options.min_channels``), else None.

        Example:
            >>> ctx.too_few(bm, 3).note  # doctest: +SKIP
            '3 defined channels < 10'
        """
        floor = self.options.min_channels if floor is None else floor
        if n >= floor:
            return None
        return row(bm.block, n=int(n), values=values, note=f"{int(n)} {what} < {floor}{suffix}")


def lacks(bm: "BlockMeasures", *needs: str) -> str:
    """Why ``bm`` lacks quantities a claim needs (``""`` when it has them).

    ``scale``: the S/Sinv quantities; ``flip``: the flip null; ``zoom``: zoom-response curves.

    Example:
        >>> lacks(bm, "scale", "flip")  # doctest: +SKIP
        'needs the stimulus variants S and Sinv (no scale quantities measured)'
    """
    if ("scale" in needs or "flip" in needs) and not bm.scale:
        return "needs the stimulus variants S and Sinv (no scale quantities measured)"
    if "flip" in needs and "sm_b_flip" not in bm.scale:
        return "needs the stimulus variant flip for the transform-control null"
    if "zoom" in needs and not bm.zoom:
        return "needs the zoom variants (zoom-response curves not measured)"
    return ""


REGISTRY: dict[str, ClaimSpec] = {}


def register(id: str, title: str, source: str, test: str, *, needs: Sequence[str] = ("id",),
             mostly: float = 0.5, gate: bool = True, prepare: Callable[[ClaimContext], "Request"] | None = None,
             opt_in: bool = False, boundary: Boundary | None = None):
    """Decorator registering ``evaluate(ctx) -> ClaimResult`` as claim ``id``.

    Example:
        >>> @register("X1", "demo", "ours", "none")  # doctest: +SKIP
        ... def evaluate(ctx): ...
    """

    def wrap(fn: Callable[[ClaimContext], ClaimResult]):
        if id in REGISTRY:
            raise ValueError(f"claim {id!r} is registered twice ({REGISTRY[id].evaluate.__module__} and {fn.__module__})")
        REGISTRY[id] = ClaimSpec(id, title, source, test, fn, tuple(needs), mostly, gate, prepare, opt_in, boundary)
        return fn

    return wrap


def split_halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``n`` image indices into two disjoint sorted halves (A: ``n // 2`` images).

    Example:
        >>> a, b = split_halves(6, np.random.default_rng(0))
        >>> sorted(np.concatenate([a, b]).tolist()), len(a), bool(np.intersect1d(a, b).size)
        ([0, 1, 2, 3, 4, 5], 3, False)
    """
    perm = rng.permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def claim_order(ids) -> list[str]:
    """Claim ids sorted by prefix, then numerically (the papers' C2 before C10, then ours, X1...).

    Example:
        >>> claim_order(["X1", "C10", "C2"])
        ['C2', 'C10', 'X1']
    """
    def key(c: str) -> tuple:
        prefix = "".join(ch for ch in c if not ch.isdigit())
        return (prefix, int("".join(ch for ch in c if ch.isdigit()) or 0), c)

    return sorted(ids, key=key)


def summarize(ctx: ClaimContext, rows: list[BlockRow], *, direction: int = 1,
              method: str = "", values: Mapping | None = None, figures: Mapping | None = None,
              reason: str = "", thresholds: Mapping | None = None) -> ClaimResult:
    """Holm-adjust the block rows, decide each block's verdict and the claim's (:mod:`.decision`).

    ``rows`` come in with raw ``p_value``, ``effect`` and its 95% interval; rows whose verdict is
    already ``inconclusive`` or ``not_applicable`` (untestable) are kept but excluded from the
    adjustment. A claim without a boundary (C11's reference check) keeps the plain rule: a block
    holds when its adjusted p is below alpha and its effect points the claim's way.

    Example:
        >>> result = summarize(ctx, rows, direction=-1)  # doctest: +SKIP
    """
    spec, opts = ctx.claim, ctx.options
    bound = ctx.boundary()
    direction = bound.direction if bound is not None else direction  # a claim's boundary says which way it points
    mostly = opts.mostly if opts.mostly is not None else spec.mostly
    tested = [i for i, r in enumerate(rows) if r.verdict not in (Verdict.INCONCLUSIVE, Verdict.NOT_APPLICABLE)]
    adjusted = holm([rows[i].p_value for i in tested]) if tested else np.array([])
    alpha_block = opts.alpha / max(1, len(tested))
    new_rows = list(rows)
    for i, p_adj in zip(tested, adjusted):
        r = rows[i]
        if bound is None:
            verdict, extra = (Verdict.HOLDS if p_adj < opts.alpha and direction * r.effect > 0 else Verdict.FAILS), {}
        else:
            verdict, extra = block_verdict(r, bound, alpha=opts.alpha, p_adjusted=float(p_adj),
                                           alpha_block=alpha_block)
        new_rows[i] = replace(r, p_adjusted=float(p_adj), verdict=verdict, values={**r.values, **extra})
    tally = over_blocks([r.verdict for r in new_rows], mostly)
    th = {"alpha": opts.alpha, "mostly": mostly, **(thresholds or {})}
    if bound is not None:
        th.update(delta=bound.delta, direction=bound.direction)
    base = dict(claim=spec.id, title=spec.title, source=spec.source, rows=tuple(new_rows), seed=ctx.seed,
                model=ctx.model, backend=ctx.backend, method=method or spec.test, thresholds=th,
                values=dict(values or {}), gate=spec.gate, figures=dict(figures or {}))
    if not tested:
        verdict = Verdict.NOT_APPLICABLE if rows and all(r.verdict == Verdict.NOT_APPLICABLE for r in rows) \
            else Verdict.INCONCLUSIVE
        notes = sorted({r.note for r in rows if r.note})
        why = reason or (f"{len(rows)} block(s): " + "; ".join(notes[:3]) if notes else "no block testable")
        return ClaimResult(verdict=verdict, statistic=math.nan, p_value=math.nan, p_adjusted=math.nan,
                           effect=math.nan, ci_low=math.nan, ci_high=math.nan, n=0, reason=why, **base)
    tested_rows = [new_rows[i] for i in tested]
    pooled = random_effects([r.effect for r in tested_rows],
                            se_from_ci([r.ci_low for r in tested_rows], [r.ci_high for r in tested_rows]) ** 2)
    if pooled.k == 0:  # no block has an interval (e.g. no bootstrap): the median block effect, no interval
        effect, lo, hi = float(np.median([r.effect for r in tested_rows])), math.nan, math.nan
    elif len(tested_rows) == 1:  # one block: its own effect and (possibly asymmetric) interval
        effect, lo, hi = tested_rows[0].effect, tested_rows[0].ci_low, tested_rows[0].ci_high
    else:
        effect, lo, hi = pooled.effect, pooled.ci_low, pooled.ci_high
    if bound is not None:
        lo, hi = bound.clip(lo), bound.clip(hi)
    base["values"].update(blocks_hold=tally.holds, blocks_fail=tally.fails, blocks_undecided=tally.inconclusive,
                          blocks_analysed=tally.analysed, blocks_needed=tally.need, tau2=pooled.tau2,
                          p_heterogeneity=pooled.p_heterogeneity, blocks_pooled=pooled.k)
    verdict = tally.verdict if bound is not None else (Verdict.HOLDS if tally.holds >= tally.need else Verdict.FAILS)
    p_sorted = np.sort(adjusted)
    p_claim = float(p_sorted[tally.need - 1]) if tally.need <= len(p_sorted) else math.nan
    summary = reason or _summary_text(tally, effect, lo, hi, bound, new_rows, verdict)
    return ClaimResult(verdict=verdict, statistic=tally.holds / max(1, tally.analysed),
                       p_value=float(np.min([rows[i].p_value for i in tested])), p_adjusted=p_claim, effect=effect,
                       ci_low=lo, ci_high=hi, n=int(sum(r.n for r in tested_rows)), reason=summary, **base)


def _summary_text(tally, effect: float, lo: float, hi: float, bound: Boundary | None, rows: Sequence[BlockRow],
                  verdict: Verdict) -> str:
    """One line: the block tally, the pooled effect, and for an undecided claim what would decide it."""
    ci = f" [{lo:+.3g}, {hi:+.3g}]" if math.isfinite(lo) else ""
    text = f"{tally.text()}; pooled effect {effect:+.3g}{ci}"
    if bound is None:
        return text
    text += f", boundary {bound.short()}"
    if verdict == Verdict.INCONCLUSIVE:
        undecided = [r for r in rows if r.verdict == Verdict.INCONCLUSIVE and "mde" in r.values]
        mdes = [r.values["mde"] for r in undecided if math.isfinite(r.values["mde"])]
        ns = [r.values["n_to_decide"] for r in undecided if math.isfinite(r.values["n_to_decide"])]
        if mdes:
            worst = max(mdes) if bound.direction > 0 else min(mdes)
            text += f"; undecided: the smallest effect these blocks detect (80% power) is up to {worst:+.3g}"
        if ns:
            text += f"; about {int(max(ns)):,} {bound.replication} per block would decide them"
    return text


def inconclusive(ctx: ClaimContext, reason: str) -> ClaimResult:
    """A claim result that could not be decided, with the reason (e.g. too few probe images)."""
    return summarize(ctx, [row("all blocks", note=reason)], reason=reason)


def not_run(ctx: ClaimContext, verdict: Verdict, reason: str, block: str = "model") -> ClaimResult:
    """A claim result whose test was not run at all (not applicable or inconclusive), with the reason."""
    return summarize(ctx, [row(block, verdict=verdict, note=reason)], reason=reason)


def row(block: str, result=None, *, verdict: Verdict | None = None, note: str = "", n: int = 0,
        values: Mapping | None = None) -> BlockRow:
    """A block row from a stats ``TestResult`` (or an inconclusive / not-applicable row with a note).

    Example:
        >>> row("layer2.1", verdict=Verdict.INCONCLUSIVE, note="3 defined channels < 10").verdict.value
        'inconclusive'
    """
    if result is None:
        return BlockRow(block=block, verdict=verdict or Verdict.INCONCLUSIVE, statistic=math.nan, p_value=math.nan,
                        p_adjusted=math.nan, effect=math.nan, ci_low=math.nan, ci_high=math.nan, n=n, note=note,
                        values=dict(values or {}))
    return BlockRow(block=block, verdict=verdict or Verdict.FAILS, statistic=result.statistic, p_value=result.p_value,
                    p_adjusted=math.nan, effect=result.effect, ci_low=result.ci_low, ci_high=result.ci_high,
                    n=result.n, note=note, values={**dict(getattr(result, "values", {}) or {}), **dict(values or {})})
