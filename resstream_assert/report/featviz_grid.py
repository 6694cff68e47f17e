"""What a featviz run adds to its claim results: the source, the sampled channels, the success
counts per block, and one image grid per analysed block (orchestration: reads the featviz
intervention's numpy data, draws with ``report.plots``).

Every featviz result gets ``stimuli="featviz"`` (its identity in reports, like a backend),
claim-level values (``fz_channels_per_block``, ``fz_steps``, ``fz_seeds``, the success rate overall
and per site, ``fz_success_I`` / ``_B`` / ``_O``, and with the early stop ``fz_plateau`` and
``fz_steps_run_mean``) and, in each block
row of a visualised block, ``fz_channels`` (channels sampled) and per site (I, B, O)
``fz_ok_*`` / ``fz_n_*`` (images that passed the success check / images tried). The first
result of an evaluation also carries the grids, as ``images`` figures (``featviz_grid_BLOCK``).
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Mapping

import numpy as np

from resstream_assert.capture.featviz_responses import FEATVIZ_SITES, SITE_LABELS, FeatvizStimuli
from resstream_assert.results import ClaimResult

#: Channels shown per block in a report's grid (the CLI draws all it is asked for).
GRID_CHANNELS = 16


def block_grid(fz: FeatvizStimuli, block: int, *, max_channels: int | None = GRID_CHANNELS, seed: int = 0,
               title: str | None = None) -> bytes:
    """PNG of one block's visualizations: a row per channel, columns I, B, O (image seed ``seed``);
    images that failed the success check are framed red.

    Example:
        >>> open("grid.png", "wb").write(block_grid(fz, 3))  # doctest: +SKIP
    """
    from resstream_assert.report.plots import image_grid_png

    start, bi = fz.block_rows(block)
    channels = sorted({t.channel for t in bi.targets})
    shown = channels[:max_channels] if max_channels else channels
    row_of = {(t.site, t.channel, t.seed): start + i for i, t in enumerate(bi.targets)}
    cells, ok = [], []
    for c in shown:
        rows = [row_of.get((s, c, seed)) for s in FEATVIZ_SITES]
        cells.append([None if r is None else bi.images[r - start] for r in rows])
        ok.append([r is not None and bool(fz.ok[r]) for r in rows])
    cols = [f"{SITE_LABELS[s]} ({s})" for s in FEATVIZ_SITES]
    more = f" (first {len(shown)} of {len(channels)} sampled)" if len(shown) < len(channels) else ""
    head = title or (f"{bi.name}{more}, seed {seed}\nsuccess {success_text(fz, block, percent=False)}\n"
                     "red frame: failed success check")
    return image_grid_png(cells, [f"ch {c}" for c in shown], cols, ok=ok, title=head)


def success_text(fz: FeatvizStimuli, block: int, percent: bool = True) -> str:
    """A block's per-site success, e.g. ``I 7/8 (88%), B 8/8 (100%), O 8/8 (100%)``.

    Example:
        >>> success_text(fz, 3), success_text(fz, 3, percent=False)  # doctest: +SKIP
        ('I 7/8 (88%), B 8/8 (100%), O 8/8 (100%)', 'I 7/8, B 8/8, O 8/8')
    """
    s = fz.summary(block)
    parts = []
    for k in (SITE_LABELS[site] for site in FEATVIZ_SITES):
        ok, n = int(s["ok_" + k]), int(s["n_" + k])
        parts.append(f"{k} {ok}/{n}" + (f" ({ok / max(1, n):.0%})" if percent else ""))
    return ", ".join(parts)


def label_featviz_results(results: Mapping[str, ClaimResult], fz: FeatvizStimuli, rmap) -> dict[str, ClaimResult]:
    """``results`` (claim id -> ClaimResult) labelled as featviz results, with sampling and success counts.

    Example:
        >>> out = label_featviz_results(results, pipeline.featviz(spec), rmap)  # doctest: +SKIP
        >>> out["C1"].rows[0].values["fz_channels"]  # doctest: +SKIP
    """
    summaries = {rmap[b.block].name: fz.summary(b.block) for b in fz.blocks}
    per_row = {name: {"fz_channels": s["channels_sampled"],
                      **{f"fz_{k}": v for k, v in s.items() if k.startswith(("ok_", "n_"))}}
               for name, s in summaries.items()}
    sampled = sorted({s["channels_sampled"] for s in summaries.values()})
    claim_values = {"fz_channels_per_block": sampled[0] if len(sampled) == 1 else float("nan"),
                    "fz_steps": fz.settings.steps, "fz_seeds": fz.seeds,
                    "fz_success_rate": float(np.mean(fz.ok)) if fz.ok.size else float("nan"),
                    **{f"fz_success_{k}": ok / n if n else float("nan") for k, (ok, n) in fz.rates().items()}}
    if fz.settings.plateau:  # the early stop is off by default; when used, say how far images ran
        ran = [b.steps_run for b in fz.blocks if b.steps_run is not None]
        claim_values.update(fz_plateau=fz.settings.plateau,
                            fz_steps_run_mean=float(np.mean(np.concatenate(ran))) if ran else float("nan"))
    figures = {}
    for b in fz.blocks:
        png = block_grid(fz, b.block)
        figures[f"featviz_grid_{b.name}"] = {
            "type": "images", "title": f"Feature visualizations of {b.name}: channels x I/B/O; success "
                                        f"{success_text(fz, b.block)}",
            "panels": [{"label": b.name, "png_base64": base64.b64encode(png).decode("ascii")}]}
    out = {}
    for i, (cid, r) in enumerate(results.items()):
        rows = tuple(replace(row, values={**row.values, **per_row[row.block]}) if row.block in per_row else row
                     for row in r.rows)
        extra = {"figures": {**r.figures, **figures}} if i == 0 else {}
        out[cid] = r.with_(stimuli="featviz", rows=rows, values={**r.values, **claim_values}, **extra)
    return out
