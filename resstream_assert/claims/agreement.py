"""Agreement between the two stimulus sources (W4): do exemplars and feature visualizations code a
block's channels alike?

Per analysed block, on the channels whose category is defined under both sources (featviz:
the sampled channels whose I and B images passed the success check), Cohen's kappa of the
P1 skip / mix / overwrite categories, a permutation p-value for kappa > 0 (featviz labels
shuffled over the channels), a bootstrap CI over channels; Holm across blocks. It is a
report-only result with the id ``C1-agree`` (not in the registry: it needs two measure sets,
so the pipeline runs it when a run uses ``--resstream-stimuli both``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats.contingency import crosstab

from resstream_assert.claims.base import ClaimContext, ClaimOptions, ClaimSpec, not_run, row, summarize
from resstream_assert.stats.effects import bootstrap_ci
from resstream_assert.errors import DegenerateDataError
from resstream_assert.measures import MIX, OVERWRITE, SKIP, UNDEFINED, BlockMeasures
from resstream_assert.results import ClaimResult, TestResult, Verdict
from resstream_assert.stats import empirical_pvalue

AGREEMENT_ID = "C1-agree"
_LEVELS = (OVERWRITE, MIX, SKIP)


def _evaluate_elsewhere(ctx: ClaimContext) -> ClaimResult:
    raise TypeError(f"{AGREEMENT_ID} compares two measure sets: call category_agreement(...)")


AGREEMENT = ClaimSpec(
    AGREEMENT_ID, "Skip/mix/overwrite categories agree between exemplar and featviz stimuli", "ours (W4)",
    "Cohen's kappa of the P1 categories on channels defined under both sources; permutation p (kappa > 0), "
    "bootstrap CI over channels; Holm across blocks", _evaluate_elsewhere, mostly=0.5, gate=False)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two label vectors over the three categories (NaN when chance agreement is total).

    Example:
        >>> cohen_kappa(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]))
        1.0
        >>> round(cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])), 3)
        0.0
    """
    a, b = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    table = crosstab(a, b, levels=(_LEVELS, _LEVELS)).count.astype(float)
    n = table.sum()
    if n == 0:
        return math.nan
    po = np.trace(table) / n
    pe = float(table.sum(1) @ table.sum(0)) / n ** 2
    return math.nan if pe >= 1.0 else float((po - pe) / (1.0 - pe))


def _kappa_test(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_resamples: int,
                n_boot: int) -> TestResult:
    k = cohen_kappa(a, b)
    if math.isnan(k):
        raise DegenerateDataError("one category only under both sources: kappa is undefined")
    null = np.array([cohen_kappa(a, rng.permutation(b)) for _ in range(n_resamples)])
    p = empirical_pvalue(k, null[~np.isnan(null)], alternative="greater")
    try:
        lo, hi = bootstrap_ci(lambda x, y: cohen_kappa(x, y), a.astype(float), b.astype(float),
                              n_resamples=n_boot, rng=rng, vectorized=False)
    except DegenerateDataError:
        lo = hi = math.nan
    return TestResult(k, p, k, lo, hi, int(a.size), "Cohen's kappa, permutation p", "greater", "cohen_kappa",
                      n_resamples=n_resamples)


def category_agreement(model: str, backend: str, exemplar: Sequence[BlockMeasures],
                       featviz: Sequence[BlockMeasures] | None, *, options: ClaimOptions = ClaimOptions(),
                       seed: int = 0, reason: str = "") -> ClaimResult:
    """Per block kappa of exemplar vs featviz categories (``featviz=None``: not applicable, with ``reason``).

    Example:
        >>> r = category_agreement("m", "torch", ex_measures, fz_measures)  # doctest: +SKIP
        >>> r.rows[0].values["kappa"]  # doctest: +SKIP
    """
    ctx = ClaimContext(model, backend, None, tuple(exemplar), {}, options, seed).for_claim(AGREEMENT)
    if featviz is None:
        return not_run(ctx, Verdict.NOT_APPLICABLE, reason or "no featviz measures").with_(stimuli="featviz")
    by_index = {m.index: m for m in featviz}
    rows = []
    for ex in ctx.analysed():
        fz = by_index[ex.index]
        a, b = ex.category("p1"), fz.category("p1")
        both = (a != UNDEFINED) & (b != UNDEFINED)
        n = int(both.sum())
        values = {"n_both": n, "n_defined_featviz": int((b != UNDEFINED).sum()),
                  "agree": float((a[both] == b[both]).mean()) if n else math.nan,
                  **{f"featviz_frac_{name}": float((b[both] == code).mean()) if n else math.nan
                     for name, code in (("skip", SKIP), ("mix", MIX), ("overwrite", OVERWRITE))}}
        few = ctx.too_few(ex, n, what="channels defined under both sources", values=values)
        if few is not None:
            rows.append(few)
            continue
        try:
            test = _kappa_test(a[both], b[both], ctx.rng(ex.index), options.n_resamples, options.n_boot)
        except DegenerateDataError as exc:
            rows.append(row(ex.block, verdict=Verdict.NOT_APPLICABLE, note=str(exc), n=n, values=values))
            continue
        rows.append(row(ex.block, test, values={**values, "kappa": test.effect}))
    return summarize(ctx, rows, direction=1).with_(stimuli="featviz")
