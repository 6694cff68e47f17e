"""Synthetic ClaimResults for the report tests (no model needed).

Also copied verbatim into pytester runs as ``synth.py``, so keep it self-contained.
"""

from __future__ import annotations

import base64
import io
import math

from resstream_assert.results import BlockRow, ClaimResult

BLOCKS = ("layer1.0", "layer2.0", "layer3.0", "layer4.0")


def tiny_png(seed: int = 0) -> str:
    """A 24x24 RGB gradient PNG, base64-encoded (a stand-in feature visualization)."""
    import numpy as np
    from matplotlib import image as mpimg

    rng = np.random.default_rng(seed)
    img = np.clip(np.linspace(0, 1, 24)[None, :, None] * rng.uniform(0.3, 1, (24, 1, 3)), 0, 1)
    buf = io.BytesIO()
    mpimg.imsave(buf, img, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(rho: float, images: bool = False) -> dict:
    """One figure of each contract type (per-block small multiples where the papers draw them)."""
    figs = {
        "mix_hist": {"type": "hist", "title": "Mix ratio M per block", "xlabel": "M", "ylabel": "channels",
                     "panels": [{"label": b, "edges": [0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                 "counts": [5 + i, 9, 3 + 2 * i, 7, 2]} for i, b in enumerate(BLOCKS)]},
        "m_vs_gain": {"type": "scatter", "title": "M vs branch gain", "xlabel": "|gamma|", "ylabel": "M",
                      "panels": [{"label": b, "x": [0.1 * k for k in range(20)],
                                  "y": [0.5 + rho * 0.05 * k + 0.1 * math.sin(k + i) for k in range(20)],
                                  "note": f"rho={rho:.2f} p=0.002"} for i, b in enumerate(BLOCKS)]},
        "scale_inv": {"type": "bars", "title": "% scale-invariant channels", "xlabel": "block",
                      "ylabel": "% channels",
                      "panels": [{"label": "all blocks", "categories": list(BLOCKS),
                                  "series": {"criterion": [30, 42, 51, 38], "null (perm)": [5, 6, 4, 5]}}]},
        "ablation": {"type": "lines", "title": "Ablation of scale-invariant channels", "xlabel": "channels ablated",
                     "ylabel": "accuracy",
                     "panels": [{"label": "zoom task", "x": [0, 4, 8, 16],
                                 "series": {"scale-invariant": [0.9, 0.7, 0.5, 0.3], "random": [0.9, 0.85, 0.8, 0.75]},
                                 "bands": {"random": {"low": [0.9, 0.8, 0.74, 0.7],
                                                      "high": [0.9, 0.9, 0.86, 0.8]}}}]},
    }
    if images:
        figs["featvis"] = {"type": "images", "title": "Feature visualizations",
                           "panels": [{"label": f"ch {c}", "png_base64": tiny_png(c)} for c in range(3)]}
    return figs


def make_result(model: str = "r18", claim: str = "C3", *, backend: str = "torch", rho: float = -0.3,
                verdict: str = "holds", gate: bool = True, block_shift: dict | None = None,
                with_figures: bool = False, images: bool = False, title: str | None = None) -> ClaimResult:
    """A ClaimResult with 4 blocks; ``block_shift={"layer3.0": 0.2}`` moves one block's rho."""
    shift = block_shift or {}
    rows = tuple(BlockRow(block=b, verdict=verdict, statistic=rho + 0.01 * i + shift.get(b, 0.0), p_value=0.004,
                          p_adjusted=0.016, effect=rho + 0.01 * i + shift.get(b, 0.0), ci_low=rho - 0.1,
                          ci_high=rho + 0.1, n=64, note="" if i else "first | block",
                          values={"rho": rho + 0.01 * i + shift.get(b, 0.0), "frac_skip": 0.25,
                                  "frac_mix": 0.5, "frac_overwrite": 0.25})
                 for i, b in enumerate(BLOCKS))
    return ClaimResult(claim=claim, title=title or f"Claim {claim}: skip channels | low gain", source="P1",
                       verdict=verdict, statistic=rho, p_value=0.001, p_adjusted=0.004, effect=rho,
                       ci_low=rho - 0.1, ci_high=rho + 0.1, n=256, rows=rows, seed=0, model=model, backend=backend,
                       method="spearman permutation, Holm", gate=gate,
                       thresholds={"alpha": 0.05, "min_effect": 0.1}, values={"rho": rho, "n_undefined": math.nan},
                       figures=figures(rho, images) if with_figures else {})
