"""Claims on captured responses alone, and how often their verdicts flip across resamples of images and channels.

:func:`evaluate_responses` runs measures and claims on responses that were captured once
(numpy only), for every claim that does not run the model again (all but C10 and C11).

:func:`verdict_stability` re-evaluates those claims ``runs`` times, each time on a random half
of the probe images (drawn without replacement), a random half of each block's channels (the
unit most claims replicate over) and another seed for the permutations, bootstraps and the
channel-mismatch null, and counts the runs whose verdict differs from the full run's. Why half: for a statistic ``T`` with variance ``s²/n``, a half-sample's deviation
from the full set's value has variance ``s²(2/n - 1/n) = s²/n``, the same as the full set's
deviation from its value on unlimited images (the half-sampling argument), so the flip rate
approximates how often a probe set of this size gives another verdict than unlimited images
would; Monte-Carlo noise of the seeded resampling is included. A half-sample also has less
power than the full set, so a verdict that fails for lack of power looks stable (every half
fails too): stability says how fragile a verdict is at this probe size, not what more images
would show.

A verdict is called **stable** only when the Clopper-Pearson upper bound of its flip rate is
below :data:`STABILITY_THRESHOLD` (with no flip that takes 36 runs), **unstable** when the
observed rate exceeds it, and neither ("undetermined") in between. C10 and C11 re-run the model
(lesions), so they are not re-evaluated; their results say so.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from resstream_assert.claims.base import REGISTRY, ClaimContext, ClaimOptions, inconclusive
from resstream_assert.stats.effects import clopper_pearson
from resstream_assert.measures import MeasureOptions, measure_all
from resstream_assert.results import ClaimResult, Verdict

if TYPE_CHECKING:
    from resstream_assert.capture.responses import Responses
    from resstream_assert.measures import BlockMeasures
    from resstream_assert.discovery.residual_map import ResidualMap

__all__ = ["STABILITY_THRESHOLD", "SUBSAMPLE_FRACTION", "evaluate_responses", "response_claims",
           "verdict_stability"]

#: A verdict that flips in more than this fraction of the re-evaluations is reported as unstable.
STABILITY_THRESHOLD = 0.10
#: Each re-evaluation uses this fraction of the probe images and of each block's channels (half-sampling).
SUBSAMPLE_FRACTION = 0.5
#: Bootstrap resamples per interval in a re-evaluation.
STABILITY_BOOT = 400


def response_claims(claims: Iterable[str] | None = None) -> list[str]:
    """The claims (of ``claims``, default all) that read captured responses only (no intervention).

    Example:
        >>> response_claims(["C1", "C10"])
        ['C1']
    """
    from resstream_assert.claims import resolve_claims

    return [cid for cid in resolve_claims(claims) if REGISTRY[cid].prepare is None]


def evaluate_responses(rmap: "ResidualMap", responses: Mapping[str, "Responses"], claims: Iterable[str] | None = None,
                       *, options: ClaimOptions = ClaimOptions(), seed: int = 0, model: str = "responses",
                       backend: str = "torch", channel_rng: np.random.Generator | None = None
                       ) -> dict[str, ClaimResult]:
    """Claim id -> result of measures and claims on ``responses`` (variant -> Responses), without a model.

    ``claims`` defaults to every claim that needs no intervention; naming one that does (C10,
    C11) or lacking a stimulus variant a claim reads is a ``ValueError`` that says so. With
    ``channel_rng`` each block keeps a random half of its channels (:func:`half_channels`).

    Example:
        >>> results = evaluate_responses(rmap, {"id": responses}, ["C1", "C3"], seed=0)  # doctest: +SKIP
        >>> results["C3"].verdict  # doctest: +SKIP
    """
    from resstream_assert.claims import needed_variants, resolve_claims

    ids = resolve_claims(claims) if claims is not None else response_claims()
    runs_model = [cid for cid in ids if REGISTRY[cid].prepare is not None]
    if runs_model:
        raise ValueError(f"{', '.join(runs_model)} run(s) the model again (an intervention): evaluate them with "
                         "resstream_assert.analyze() or the pytest suite, not on captured responses")
    missing = [v for v in needed_variants(ids) if v not in responses]
    if missing:
        raise ValueError(f"claims {', '.join(ids)} need the stimulus variants {', '.join(missing)}, which were not "
                         f"captured (have: {', '.join(responses) or 'none'}); capture them with variants=(...)")
    measures = tuple(measure_all(rmap, responses, MeasureOptions(seed=seed)))
    if channel_rng is not None:
        measures = tuple(half_channels(bm, channel_rng) for bm in measures)
    ctx = ClaimContext(model=model, backend=backend, rmap=rmap, measures=measures, responses=responses,
                       options=options, seed=seed)
    n_images = responses["id"].n_images
    if n_images < options.min_images:
        why = (f"{n_images} probe images < {options.min_images} (min_images): top-k exemplars would not be "
               "channel-specific; use more images")
        return {cid: inconclusive(ctx.for_claim(REGISTRY[cid]), why) for cid in ids}
    return {cid: REGISTRY[cid].evaluate(ctx.for_claim(REGISTRY[cid])) for cid in ids}


def half_channels(bm: "BlockMeasures", rng: np.random.Generator, fraction: float = SUBSAMPLE_FRACTION
                  ) -> "BlockMeasures":
    """``bm`` restricted to a random ``fraction`` of its channels (every per-channel array sliced alike).

    Example:
        >>> half_channels(bm, np.random.default_rng(0)).channels == bm.channels // 2  # doctest: +SKIP
        True
    """
    c = bm.channels
    keep = np.sort(rng.choice(c, size=max(1, int(round(fraction * c))), replace=False))

    def cut(a):
        return a[keep] if isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[0] == c else a

    changes = {f.name: cut(getattr(bm, f.name)) for f in fields(bm)
               if isinstance(getattr(bm, f.name), np.ndarray)}
    for name in ("responses_to_exemplars", "scale", "zoom"):
        changes[name] = {k: cut(v) for k, v in getattr(bm, name).items()}
    return replace(bm, channels=len(keep), **changes)


def _run_seed(seed: int, run: int) -> int:
    """An independent 32-bit seed for re-evaluation ``run`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, 0x57AB, run]).generate_state(1)[0])


def verdict_stability(rmap: "ResidualMap", responses: Mapping[str, "Responses"], results: Mapping[str, ClaimResult],
                      *, runs: int, options: ClaimOptions = ClaimOptions(), seed: int = 0,
                      fraction: float = SUBSAMPLE_FRACTION) -> dict[str, dict[str, float]]:
    """Claim id -> how often its verdict in ``results`` flips over ``runs`` half-samples and seeds.

    Only claims that read responses alone are re-evaluated (the others are left out). Each
    value holds ``runs``, ``flips``, ``rate`` with its Clopper-Pearson 95% ``ci_low``/``ci_high``,
    ``n_images`` (per run) of ``of_images``, ``threshold``, ``unstable`` (1.0 when ``rate``
    exceeds it) and the count of each verdict over the runs. When a subsample would have fewer
    than ``options.min_images`` images, nothing is re-evaluated: each value says so with
    ``runs = 0`` (and ``min_images``).

    Example:
        >>> full = evaluate_responses(rmap, responses, ["C1"])  # doctest: +SKIP
        >>> verdict_stability(rmap, responses, full, runs=20)["C1"]["rate"]  # doctest: +SKIP
        0.05
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    ids = [cid for cid in results if REGISTRY[cid].prepare is None]
    if not ids:
        return {}
    n = responses["id"].n_images
    m = max(1, int(round(fraction * n)))
    if m < options.min_images:  # every re-evaluation would be inconclusive: that is no measure of stability
        return {cid: {"runs": 0, "n_images": m, "of_images": n, "min_images": options.min_images} for cid in ids}
    seen: dict[str, list[str]] = {cid: [] for cid in ids}
    # Verdicts read the effects' intervals: bootstraps stay, fewer of them (their noise is part of the flips).
    quick = options.with_(n_boot=min(options.n_boot, STABILITY_BOOT))
    for run in range(runs):
        s = _run_seed(seed, run)
        rng = np.random.default_rng(s)
        rows = np.sort(rng.choice(n, size=m, replace=False))
        sub = {v: r.subset(rows) for v, r in responses.items()}
        out = evaluate_responses(rmap, sub, ids, options=quick, seed=s, model=results[ids[0]].model,
                                 backend=results[ids[0]].backend, channel_rng=rng)
        for cid in ids:
            seen[cid].append(out[cid].verdict.value)
    table = {}
    for cid in ids:
        full = results[cid].verdict.value
        flips = sum(v != full for v in seen[cid])
        lo, hi = clopper_pearson(flips, runs)
        table[cid] = {"runs": runs, "flips": flips, "rate": flips / runs, "ci_low": lo, "ci_high": hi,
                      "n_images": m, "of_images": n, "threshold": STABILITY_THRESHOLD,
                      "channel_fraction": fraction, "stable": float(hi < STABILITY_THRESHOLD),
                      "unstable": float(flips / runs > STABILITY_THRESHOLD),
                      **{v.value: float(seen[cid].count(v.value)) for v in Verdict}}
    return table
