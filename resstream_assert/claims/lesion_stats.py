"""C10's statistics on per-image correctness under lesions (the test itself; :mod:`.ablation` plans the
lesions and turns the results into the claim).

``D(S, z) = acc_intact(z) - acc_S(z)`` and ``ΔD(S, z) = D(S, z) - D(S, 1)``; the statistic is the
least-squares slope of ΔD against zoom, its p-value the rank of S*'s slope among the random sets'
(or Besag and Clifford's sequential p when the random sets stopped early), with the secondary values,
a paired bootstrap interval of the excess slope and the figure's data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from resstream_assert.results import TestResult
from resstream_assert.stats import empirical_pvalue, sequential_pvalue, trend_slope

__all__ = ["SlopeExceedances", "delta_d_slopes", "lesion_test"]


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.arange(n_boot)[:, None], idx), 1.0)
    return w


def delta_d_slopes(zooms, intact: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Per set (rows of ``sets`` (m, Z, n)), the least-squares slope of ΔD(S, z) = D(S, z) - D(S, 1) vs zoom.

    Example:
        >>> delta_d_slopes((1, 2), np.ones((2, 4), bool), np.array([[[1, 1, 1, 1], [1, 0, 0, 1]]], bool)).tolist()
        [0.5]
    """
    d = intact.mean(-1)[None] - sets.astype(np.float64).mean(-1)
    return np.asarray(trend_slope(np.asarray(zooms, float), d - d[:, :1]))  # 2-D in: one slope per row


@dataclass(frozen=True)
class SlopeExceedances:
    """C10's sequential stop: ``h`` random sets whose ΔD slope reaches S*'s (Besag-Clifford).

    The lesion intervention calls it after each group of random sets; hashable, so it is part
    of the request's key.

    Example:
        >>> SlopeExceedances(2)((1, 2), np.ones((2, 4), bool), np.ones((2, 4), bool), np.ones((3, 2, 4), bool))
        True
    """

    h: int

    @staticmethod
    def exceed(zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray) -> np.ndarray:
        """Per random set, in run order: is its slope as large as S*'s?"""
        slopes = delta_d_slopes(zooms, intact, np.concatenate([selected[None], random]))
        return slopes[1:] >= slopes[0]

    def __call__(self, zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray) -> bool:
        return int(self.exceed(zooms, intact, selected, random).sum()) >= self.h


def lesion_test(zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray, anti: np.ndarray | None = None,
                *, rng: np.random.Generator | int = 0, n_boot: int = 1000, n_max: int | None = None,
                sequential: int = 0) -> tuple[TestResult, dict, dict]:
    """C10's test on per-image correctness: ``intact`` / ``selected`` / ``anti`` (Z, n), ``random`` (N, Z, n).

    Returns ``(test, values, figure)``; ``zooms[0]`` must be 1. ``n_boot=0`` skips the
    bootstrap (NaN CIs). With ``sequential=h`` the random sets were run under Besag and
    Clifford's sequential test (stop at the h-th set whose slope reaches S*'s) out of
    ``n_max`` planned: the p-value is :func:`~resstream_assert.stats.sequential_pvalue`; the
    secondary values use every set that ran.

    Example:
        >>> r = np.random.default_rng(0).random((20, 3, 100)) < 0.8
        >>> t, v, _ = lesion_test((1, 1.5, 2), np.ones((3, 100), bool), r[0], r[1:], n_boot=0)
        >>> 0 < t.p_value <= 1
        True
    """
    z = np.asarray(zooms, float)
    if z[0] != 1.0:
        raise ValueError(f"zooms must start at 1.0 (ΔD is measured from the unzoomed accuracy), got {tuple(z)}")
    n_rand, n_img = random.shape[0], intact.shape[-1]
    if n_rand < 2:
        raise ValueError(f"need at least 2 random sets, got {n_rand}")
    stack = [selected[None], random] + ([anti[None]] if anti is not None else [])
    sets = np.concatenate(stack).astype(np.float64)  # (S, Z, n): row 0 S*, 1..N random, last anti
    d = intact.mean(-1)[None] - sets.mean(-1)
    dd = d - d[:, :1]
    slopes = delta_d_slopes(z, intact, sets)
    s_sel, s_rand = float(slopes[0]), slopes[1:1 + n_rand]
    if sequential:
        p, _ = sequential_pvalue(s_rand >= s_sel, n_max or n_rand, sequential)
    else:
        p = empirical_pvalue(s_sel, s_rand, alternative="greater")
    values = _lesion_values(z, intact, sets, dd, s_rand, n_img)
    if anti is not None:
        values.update(anti_slope=float(slopes[-1]), anti_excess_slope=float(slopes[-1] - s_rand.mean()),
                      p_anti=empirical_pvalue(float(slopes[-1]), s_rand, alternative="greater"))
    values["mcnemar_frac_sig_max_zoom"] = _mcnemar_fraction(selected, random)
    lo = hi = gap_lo = gap_hi = math.nan
    if n_boot > 0:
        lo, hi, gap_lo, gap_hi = _bootstrap_intervals(z, intact, sets, n_rand, n_boot, np.random.default_rng(rng))
    values.update(gap_max_zoom_ci_low=float(gap_lo), gap_max_zoom_ci_high=float(gap_hi))
    values.update(_prediction_and_confound(s_sel, s_rand, d[0, 0], d[1:1 + n_rand, 0]))
    test = TestResult(s_sel, p, s_sel - float(s_rand.mean()), float(lo), float(hi), n_img,
                      "rank of the ΔD-vs-zoom slope among random equal-size lesions", "greater", "excess_slope",
                      n_rand, values={})
    return test, values, _lesion_figure(z, intact, sets, dd, n_rand)


def _lesion_values(z: np.ndarray, intact: np.ndarray, sets: np.ndarray, dd: np.ndarray, s_rand: np.ndarray,
                   n_img: int) -> dict[str, float]:
    """C10's row values beside the test: the random sets' mean slope, the placebo p, and per zoom the
    accuracies, S*'s ΔD rank p and its excess over the random sets' mean ΔD.

    Example:
        >>> sets = np.ones((3, 2, 4))
        >>> v = _lesion_values(np.array([1.0, 2.0]), np.ones((2, 4)), sets, np.zeros((3, 2)), np.zeros(2), 4)
        >>> v["n_random"], v["acc_intact_z2"], v["excess_dD_z2"]
        (2, 1.0, 0.0)
    """
    n_rand = len(s_rand)
    gap = dd[0] - dd[1:1 + n_rand].mean(0)
    values: dict[str, float] = {"n_random": n_rand, "n_images": n_img, "slope_random_mean": float(s_rand.mean()),
                                "p_placebo": empirical_pvalue(float(s_rand[0]), s_rand[1:], alternative="greater"),
                                "gap_max_zoom": float(gap[-1])}
    for j, zz in enumerate(z):
        key = f"{zz:g}"
        values[f"acc_intact_z{key}"] = float(intact[j].mean())
        values[f"acc_selected_z{key}"] = float(sets[0, j].mean())
        values[f"acc_random_mean_z{key}"] = float(sets[1:1 + n_rand, j].mean())
        if j:
            values[f"p_zoom{key}"] = empirical_pvalue(float(dd[0, j]), dd[1:1 + n_rand, j], alternative="greater")
            values[f"excess_dD_z{key}"] = float(gap[j])
    return values


def _mcnemar_fraction(selected: np.ndarray, random: np.ndarray) -> float:
    """Secondary (spec C10): the fraction of random sets from which S* differs by an exact one-sided McNemar
    test (S* worse) at p < 0.05, at the largest zoom.

    Example:
        >>> _mcnemar_fraction(np.zeros((1, 20), bool), np.ones((3, 1, 20), bool))
        1.0
    """
    from scipy.stats import binom

    b = (~selected[-1] & random[:, -1]).sum(-1)
    c = (selected[-1] & ~random[:, -1]).sum(-1)
    p_mc = np.where(b + c > 0, binom.sf(b - 1, np.maximum(b + c, 1), 0.5), 1.0)
    return float(np.mean(p_mc < 0.05))


def _bootstrap_intervals(z: np.ndarray, intact: np.ndarray, sets: np.ndarray, n_rand: int, n_boot: int,
                         gen: np.random.Generator) -> tuple[float, float, float, float]:
    """Paired bootstrap over the scored images: 95% intervals of S*'s excess slope and of its ΔD gap at the
    largest zoom, ``(lo, hi, gap_lo, gap_hi)``."""
    n_img = intact.shape[-1]
    w = _resample_counts(n_img, n_boot, gen)
    acc_b = (sets.reshape(-1, n_img) @ w.T / n_img).reshape(sets.shape[0], len(z), n_boot)
    int_b = intact.astype(np.float64) @ w.T / n_img  # (Z, B)
    dd_b = int_b[None] - acc_b
    dd_b = dd_b - dd_b[:, :1]
    sl_b = np.asarray(trend_slope(z, dd_b.transpose(0, 2, 1).reshape(-1, len(z)))).reshape(sets.shape[0], n_boot)
    excess = sl_b[0] - sl_b[1:1 + n_rand].mean(0)
    gaps = dd_b[0, -1] - dd_b[1:1 + n_rand, -1].mean(0)
    lo, hi = np.percentile(excess, [2.5, 97.5])
    gap_lo, gap_hi = np.percentile(gaps, [2.5, 97.5])
    return lo, hi, gap_lo, gap_hi


def _lesion_figure(z: np.ndarray, intact: np.ndarray, sets: np.ndarray, dd: np.ndarray, n_rand: int) -> dict:
    """One panel of the shared "lines" figure contract: extra damage under zoom, S* vs the random band."""
    return {"x": z.tolist(), "series": {"scale-invariant set": dd[0].tolist(),
                                       "random sets (mean)": dd[1:1 + n_rand].mean(0).tolist()},
            "bands": {"random sets (mean)": {"low": np.percentile(dd[1:1 + n_rand], 5, axis=0).tolist(),
                                             "high": np.percentile(dd[1:1 + n_rand], 95, axis=0).tolist()}},
            "acc_intact": intact.mean(-1).tolist(), "acc_selected": sets[0].mean(-1).tolist(),
            "acc_random_mean": sets[1:1 + n_rand].mean(-1).mean(0).tolist()}


def _prediction_and_confound(s_sel: float, s_rand: np.ndarray, d_sel: float, d_rand: np.ndarray) -> dict:
    """Beside the exact rank p: the t-prediction p of S*'s slope, and S*'s baseline damage (zoom 1) against the
    random sets' (the confound the unfiltered random sets leave open), with the slope excess adjusted for it."""
    from scipy.stats import t as student_t

    n = s_rand.size
    out = {"baseline_damage_selected": float(d_sel), "baseline_damage_random_mean": float(d_rand.mean()),
           "p_baseline_damage": empirical_pvalue(float(d_sel), d_rand, alternative="greater"),
           "p_t_prediction": math.nan, "excess_slope_adjusted": math.nan, "p_adjusted": math.nan}
    sd = float(s_rand.std(ddof=1)) if n > 1 else 0.0
    if sd > 0:  # (s* - mean) / (sd sqrt(1 + 1/N)) on N - 1 df: S* as one more draw of the random sets' normal
        out["p_t_prediction"] = float(student_t.sf((s_sel - s_rand.mean()) / (sd * math.sqrt(1 + 1 / n)), n - 1))
    if n > 2 and np.ptp(d_rand) > 0:  # regression on baseline damage (spec C10: matching by D(S_r, 1))
        b, a = np.polyfit(d_rand, s_rand, 1)
        resid = s_rand - (a + b * d_rand)
        adj = float(s_sel - (a + b * d_sel))
        out.update(excess_slope_adjusted=adj, p_adjusted=empirical_pvalue(adj, resid, alternative="greater"))
    return out
