"""The library entry point without pytest: ``analyze(model) -> [ClaimResult, ...]``.

It strings the arrows together once: load -> discover -> stimuli -> capture -> measures ->
claims. Each claim declares the stimulus variants it needs; the union is captured in one
pass per variant, shared by every claim.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from resstream_assert.claims import REGISTRY, ClaimContext, ClaimOptions, claim_order
from resstream_assert.claims.base import inconclusive
from resstream_assert.results import ClaimResult
from resstream_assert.session import RunConfig, Workbench


def needed_variants(claim_ids: Iterable[str]) -> tuple[str, ...]:
    """The stimulus variants the given claims need, ``id`` first.

    Example:
        >>> needed_variants(["C1", "C3"])
        ('id',)
    """
    out = ["id"]
    for cid in claim_ids:
        out += [v for v in REGISTRY[cid].needs if v not in out]
    return tuple(out)


def resolve_claims(ids: Iterable[str] | None) -> list[str]:
    """Validate claim ids (case-insensitive); ``None`` means every registered claim.

    Example:
        >>> resolve_claims(["c3", "C1"])
        ['C1', 'C3']
    """
    if ids is None:
        return claim_order(REGISTRY)
    wanted = [c.upper() for c in ids]
    unknown = [c for c in wanted if c not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; registered: {', '.join(claim_order(REGISTRY))}")
    return claim_order(set(wanted))


def evaluate(workbench: Workbench, spec: str, backend: str = "torch", claims: Iterable[str] | None = None,
             options: ClaimOptions | None = None) -> dict[str, ClaimResult]:
    """Evaluate claims on one model through a workbench (memoized captures and measures).

    Example:
        >>> results = evaluate(Workbench(RunConfig()), "zoo:resnet18-synth96", claims=["C1"])  # doctest: +SKIP
    """
    from resstream_assert.measures import MeasureOptions, measure_all

    ids = resolve_claims(claims)
    cfg = workbench.config
    options = options or ClaimOptions.from_run(cfg.claim_options)
    variants = needed_variants(ids)
    resp = workbench.responses(spec, variants, backend)
    rmap = workbench.map(spec, backend)
    # Measures depend on which variants were captured (scale and zoom quantities need theirs).
    measures = workbench.memo(("measures", spec, backend, cfg.seed, variants),
                              lambda: tuple(measure_all(rmap, resp, MeasureOptions(seed=cfg.seed))))
    loaded = workbench.model(spec, backend)
    probe = workbench.probe(loaded.input_size)
    ctx = ClaimContext(model=str(spec), backend=backend, rmap=rmap,
                       measures=measures, responses=resp, options=options, seed=cfg.seed, labels=probe.labels,
                       extra={"loaded_meta": dict(loaded.meta), "control": loaded.control})
    if len(probe) < options.min_images:
        why = (f"{len(probe)} probe images < {options.min_images} (min_images): top-k exemplars would not be "
               "channel-specific; use more images (--resstream-images)")
        return {cid: inconclusive(ctx, cid, why) for cid in ids}
    lesion_claims = tuple(c for c in ("C10", "C11") if c in ids)
    if lesion_claims:  # the only claims that run the model again (lesions), and only when asked for
        from resstream_assert.capture.lesion import lesion_context_data, resolve_options

        lesion_opts = replace(resolve_options(options, cfg), claims=lesion_claims)
        lesion = workbench.memo(("lesion", spec, backend, cfg.seed, lesion_opts),
                                lambda: lesion_context_data(workbench, spec, backend, rmap, measures, lesion_opts))
        ctx = replace(ctx, lesion=lesion)
    return {cid: REGISTRY[cid].evaluate(ctx) for cid in ids}


def analyze(model: str = "zoo:resnet18-synth96", *, claims: Iterable[str] | None = None,
            config: RunConfig | None = None, options: ClaimOptions | None = None,
            backend: str = "torch") -> list[ClaimResult]:
    """Run the claims on a model spec and return the results, without pytest.

    Example:
        >>> results = analyze("zoo:resnet18-synth96", claims=["C1", "C3"])  # doctest: +SKIP
        >>> [(r.claim, r.verdict.value) for r in results]  # doctest: +SKIP
    """
    config = (config or RunConfig()).with_(models=(model,))
    return list(evaluate(Workbench(config), model, backend, claims, options).values())
