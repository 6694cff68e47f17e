"""C4: evidence for inhibition by the block is mixed (P1). Reported, never gated.

P1 compares the branch's response to the input's exemplars, ``B(X_I)``, between overwrite
(``M < 1``) and skip (``M >= 1``) channels. Done on one set of images this is circular:
``M = O(X_I) / O(X_B)`` and ``O(X_I)`` contains ``B(X_I)``, so a channel whose branch happens
to respond more on the input's exemplars reads as more skip-like, and the groups differ even
when input and branch are independent (p < 0.05 in 11% of null blocks at 64 channels, 19% at
256). Here the groups and the compared quantity come from **disjoint halves of the probe
images** (one seeded split for all blocks): ``M`` on half A, ``B(X_I)`` on the top-k exemplars
of the input within half B. With input and branch independent the two halves are independent,
so the groups are exchangeable with respect to the half-B quantity.

The compared quantity is ``B(X_I)`` standardized by the branch's own distribution over half B,
``z_c = (B_c(X_I) - mean_n B_c) / sd_n B_c`` (in branch-SD units): a real branch has a BN
offset and a scale that move with its place on the spectrum, which would shift raw ``B(X_I)``
between the groups without any inhibition. Per block: Welch's t that ``z`` is lower in
overwrite channels, its p-value from permutations of the branch's half-B images against the
input's (the null: any images are as good as the input's exemplars); one permutation moves
every channel alike, so the dependence between channels is kept (channels share exemplars
and respond together: treating them as independent, Welch's own p rejected in 5.7% [5.0, 6.5]
of the blocks of real nulls). The effect is the difference of group means (overwrite - skip,
branch SDs) with a 95% CI from its image-bootstrap SE (exemplars and standardization redone on
each resample of half B); Holm across blocks. The raw ``B(X_I)``
comparison (Mann-Whitney, the papers' quantity), Welch's own p and SE and the positive-input
tuning correlation (``rho(I_c, B_c | I_c > 0)`` on half B) are row values.

"Mixed" is heterogeneity of the block effects, Cochran's Q (chi-square on ``k - 1`` df) with the
bootstrap SEs as weights: the claim holds when the block effects differ beyond
sampling error (p < alpha) **and** at least one block shows inhibition after Holm; it fails
when the effects are homogeneous (uniformly null or uniformly inhibitory). The exemplars are
always the probe's, also under ``--resstream-stimuli featviz``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.base import ClaimContext, register, row, split_halves, summarize
from resstream_assert.errors import DegenerateDataError
from resstream_assert.measures import MeasureOptions, block_measures, exemplars
from resstream_assert.results import TestResult, Verdict
from resstream_assert.stats import cochran_q, mann_whitney, welch_difference

#: Fewest channels per group (overwrite, skip) for a block's test.
MIN_GROUP = 5
#: Most image permutations per block (the smallest p is 1 / (n + 1): enough for Holm over a ResNet's blocks).
MAX_PERMUTATIONS = 1999
#: Image bootstraps per block for the SE of its effect (the CI and Cochran's Q weights).
N_BOOT_SE = 200


def _block_quantities(ctx: ClaimContext, bm, halves) -> dict[str, np.ndarray]:
    """M on half A; on half B the input's exemplars, the branch's responses, standardized and raw B(X_I), and the
    tuning rho."""
    block = ctx.map[bm.index]
    resp = ctx.responses["id"]
    r_a, r_b = resp.subset(halves[0]), resp.subset(halves[1])
    m_a = block_measures(block, {"id": r_a}, MeasureOptions(seed=ctx.seed, tuning=False)).m_p1
    on_b = block_measures(block, {"id": r_b}, MeasureOptions(seed=ctx.seed))
    branch = r_b.get(block, "branch_out").astype(np.float64)
    mu, sd = branch.mean(axis=0), branch.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (on_b.b_at_xi - mu) / sd, np.nan)
    inp = r_b.get(block, "skip_out")
    return {"m": m_a, "z": z, "raw": on_b.b_at_xi, "rho": on_b.rho_tuning, "branch": branch, "mu": mu, "sd": sd,
            "input": inp, "xi": exemplars(inp, MeasureOptions().k)}


def _welch_rows(z: np.ndarray, over: np.ndarray, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch's difference (overwrite - skip) and t of each row of ``z`` (R, C)."""
    a, b = z[:, over], z[:, skip]
    diff = a.mean(axis=1) - b.mean(axis=1)
    se = np.sqrt(a.var(axis=1, ddof=1) / a.shape[1] + b.var(axis=1, ddof=1) / b.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return diff, diff / se


def _image_null(q: dict, over: np.ndarray, skip: np.ndarray, rng: np.random.Generator, n_perm: int):
    """Welch's difference and t under ``n_perm`` permutations of the branch's half-B images against the input's.

    C4's null is "the branch's response does not depend on the input's feature": then any images are as good
    as the input's exemplars. One permutation moves every channel's branch alike, so the dependence between
    channels (which share exemplars and respond together) is kept; a test that treats channels as independent
    rejected in 5.7% of real null blocks.
    """
    branch, xi, mu, sd = q["branch"], q["xi"], q["mu"], q["sd"]
    n, cols = branch.shape[0], np.arange(branch.shape[1])[:, None]
    diffs, ts = [], []
    for start in range(0, n_perm, 128):
        perms = np.argsort(rng.random((min(128, n_perm - start), n)), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (branch[perms[:, xi], cols].mean(axis=2) - mu) / sd
        d, t = _welch_rows(z, over, skip)
        diffs.append(d)
        ts.append(t)
    return np.concatenate(diffs), np.concatenate(ts)


def _bootstrap_se(q: dict, over: np.ndarray, skip: np.ndarray, rng: np.random.Generator) -> float:
    """SE of the block's difference over image bootstraps of half B (exemplars and standardization redone on
    each): it carries the channels' dependence and, unlike a null SE, the spread a real effect adds."""
    inp, branch, k = q["input"], q["branch"], q["xi"].shape[1]
    n, cols = branch.shape[0], np.arange(branch.shape[1])[:, None]
    diffs = []
    for _ in range(N_BOOT_SE):
        idx = rng.integers(0, n, n)
        b = branch[idx]
        top = np.argpartition(-inp[idx], k - 1, axis=0)[:k].T  # the top k (their order does not matter here)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (b[top, cols].mean(axis=1) - b.mean(axis=0)) / b.std(axis=0, ddof=1)
        diffs.append(np.nanmean(z[over]) - np.nanmean(z[skip]))
    return float(np.nanstd(diffs, ddof=1))


def _block_test(q: dict, over: np.ndarray, skip: np.ndarray, rng, n_perm: int) -> TestResult:
    """The block's test: permutation p of Welch's t (one-sided, overwrite lower); the difference with a 95% CI
    from its image-bootstrap SE."""
    welch = welch_difference(q["z"][over], q["z"][skip], alternative="less")
    _, null_t = _image_null(q, over, skip, rng, n_perm)
    obs_t = _welch_rows(q["z"][None, :], over, skip)[1][0]
    p = (1 + int(np.sum(null_t <= obs_t))) / (n_perm + 1)
    se = _bootstrap_se(q, over, skip, rng)
    return replace(welch, p_value=p, ci_low=welch.effect - 1.96 * se, ci_high=welch.effect + 1.96 * se,
                   method="welch t, permutation p over images", n_resamples=n_perm,
                   values={**welch.values, "se_bootstrap": se, "se_welch": welch.values["se"],
                           "p_welch": welch.p_value})


def _secondary(q: dict, over: np.ndarray, skip: np.ndarray, rng) -> dict[str, float]:
    values = {"median_raw_b_at_xi_overwrite": float(np.nanmedian(q["raw"][over])),
              "median_raw_b_at_xi_skip": float(np.nanmedian(q["raw"][skip]))}
    for name, key in (("raw", "raw"), ("tuning", "rho")):
        try:
            t = mann_whitney(q[key][over], q[key][skip], alternative="less", rng=rng, n_boot=0)
            values.update({f"p_{name}": t.p_value, f"effect_{name}": t.effect})
        except DegenerateDataError:
            values.update({f"p_{name}": math.nan, f"effect_{name}": math.nan})
    return values


@register("C4", "Evidence for inhibition by the block is mixed", "P1",
          "groups by M on half A of the probe images, the branch's standardized response to the input's exemplars "
          "on half B; per block one-sided Welch t (overwrite M<1 lower than skip M>=1, effect = mean difference in "
          "branch SDs), p from image permutations, Holm; holds when Cochran's Q (image-bootstrap SEs) finds the "
          "block effects heterogeneous and >= 1 block inhibited",
          gate=False, boundary=Boundary(-0.2, -1, "overwrite minus skip, in branch SDs", "channels"))
def inhibition(ctx: ClaimContext):
    """C4: is the branch's response to the input's feature lower in overwrite channels, unevenly over blocks?

    Example:
        >>> inhibition(ctx).values["p_heterogeneity"]  # doctest: +SKIP
    """
    halves = split_halves(ctx.responses["id"].n_images, ctx.rng(-1, "split"))
    n_perm = min(ctx.options.n_resamples, MAX_PERMUTATIONS)
    rows = []
    for bm in ctx.analysed():
        q = _block_quantities(ctx, bm, halves)
        ok = np.isfinite(q["m"]) & np.isfinite(q["z"])
        over, skip = ok & (q["m"] < 1), ok & (q["m"] >= 1)
        counts = {"n_overwrite": int(over.sum()), "n_skip": int(skip.sum()), "n_images_m": len(halves[0]),
                  "n_images_b": len(halves[1])}
        if min(over.sum(), skip.sum()) < MIN_GROUP:
            rows.append(row(bm.block, n=int(over.sum() + skip.sum()), values=counts,
                            note=f"{int(over.sum())} overwrite / {int(skip.sum())} skip channels: < {MIN_GROUP} "
                                 "in a group"))
            continue
        rng = ctx.rng(bm.index)
        try:
            test = _block_test(q, over, skip, rng, n_perm)
        except DegenerateDataError as exc:
            rows.append(row(bm.block, verdict=Verdict.NOT_APPLICABLE, note=str(exc), values=counts))
            continue
        rows.append(row(bm.block, test, values={**counts, **_secondary(q, over, skip, rng)}))
    result = summarize(ctx, rows, direction=-1)
    tested = [r for r in result.rows if np.isfinite(r.effect) and "se_bootstrap" in r.values]
    if not tested:
        return result
    n_inh = sum(r.verdict == Verdict.HOLDS for r in tested)
    n_none = sum(r.verdict == Verdict.FAILS for r in tested)
    try:
        het = cochran_q([r.effect for r in tested], [r.values["se_bootstrap"] for r in tested])
        p_q = het.p_value
    except DegenerateDataError as exc:
        return result.with_(verdict=Verdict.INCONCLUSIVE, reason=f"heterogeneity not testable: {exc}",
                            values={**result.values, "n_significant": n_inh, "n_tests": len(tested)})
    # "Mixed" needs both: block effects that differ (Q) and inhibition somewhere. Evidence against it is
    # every block decided the same way (all inhibited, or all clear of the boundary); anything else is open.
    mixed = p_q < ctx.options.alpha and n_inh > 0
    uniform = n_inh == len(tested) or n_none == len(tested)
    verdict = Verdict.HOLDS if mixed else Verdict.FAILS if uniform else Verdict.INCONCLUSIVE
    how = ("mixed: heterogeneous, and inhibition in some blocks" if mixed else
           "uniform: every block inhibited" if n_inh == len(tested) else
           "uniform: no block inhibited (every interval clear of the boundary)" if uniform else
           "heterogeneous, but no block shows inhibition" if p_q < ctx.options.alpha else
           "block effects not shown to differ and not all decided: more images would decide")
    return result.with_(
        verdict=verdict, statistic=het.statistic,
        values={**result.values, "n_significant": n_inh, "n_tests": len(tested), "q": het.statistic,
                "p_heterogeneity": p_q, "i2": het.effect,
                "pooled_effect": het.values["pooled_effect"], "pooled_se": het.values["pooled_se"]},
        reason=f"Cochran's Q = {het.statistic:.3g} on {len(tested) - 1} df (p = {p_q:.3g}, I2 = "
               f"{het.effect:.2f}); {n_inh}/{len(tested)} blocks inhibited after Holm: {how}")
