"""Figures from the ``ClaimResult.figures`` contract, as PNG bytes (matplotlib, Agg).

A figure is ``{"type", "title", "xlabel", "ylabel", "panels": [...]}`` with one panel per
block (small multiples, up to 4 per row) or a single panel:

- ``hist``: ``{"label", "edges", "counts"}`` (e.g. the mix ratio in the papers' bins)
- ``scatter``: ``{"label", "x", "y", "note"}`` (e.g. M vs branch gain, with "rho=... p=...")
- ``bars``: ``{"label", "categories", "series": {name: [...]}}`` (criterion next to its nulls)
- ``lines``: ``{"label", "x", "series": {name: [...]}, "bands": {name: {"low", "high"}}}``
- ``images``: ``{"label", "png_base64"}`` (feature-visualization grids)

matplotlib is imported inside the functions, and figures are built with
``matplotlib.figure.Figure`` + the Agg canvas rather than pyplot: no global state, no
backend switching, safe next to a user's own pyplot session.
"""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from resstream_assert.formatting import to_float
from resstream_assert.keys import backend_label, result_key

__all__ = ["render_figure", "result_figures", "has_data", "render_all", "write_pngs", "image_grid_png", "FIGURE_TYPES"]

FIGURE_TYPES = ("hist", "scatter", "bars", "lines", "images")
_MAX_COLS = 4
_PANEL_W, _PANEL_H = 3.4, 2.7  # inches per panel: readable text at dpi 100


def _floats(xs: Sequence[Any]) -> list[float]:
    return [to_float(x) for x in (xs or [])]


def _hist(ax: Any, p: Mapping[str, Any], colors: Sequence[Any]) -> None:
    edges, counts = _floats(p.get("edges", [])), _floats(p.get("counts", []))
    if len(edges) == len(counts) + 1 and counts:
        ax.stairs(counts, edges, fill=True, color=colors[0], alpha=0.75)
        ax.stairs(counts, edges, color="black", linewidth=0.6)


def _scatter(ax: Any, p: Mapping[str, Any], colors: Sequence[Any]) -> None:
    ax.scatter(_floats(p.get("x", [])), _floats(p.get("y", [])), s=9, alpha=0.6, color=colors[0], linewidths=0)
    if p.get("note"):
        ax.text(0.03, 0.97, str(p["note"]), transform=ax.transAxes, va="top", ha="left", fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"})


def _bars(ax: Any, p: Mapping[str, Any], colors: Sequence[Any]) -> None:
    cats = [str(c) for c in p.get("categories", [])]
    series = dict(p.get("series", {}))
    width = 0.8 / max(1, len(series))
    for i, (name, ys) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(cats))]
        ax.bar(xs, _floats(ys)[: len(cats)], width=width, label=str(name), color=colors[i % len(colors)])
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels(cats, rotation=30 if max((len(c) for c in cats), default=0) > 6 else 0,
                       ha="right" if max((len(c) for c in cats), default=0) > 6 else "center", fontsize=7)


def _lines(ax: Any, p: Mapping[str, Any], colors: Sequence[Any]) -> None:
    x = _floats(p.get("x", []))
    names = list(dict(p.get("series", {})))
    for name, band in dict(p.get("bands", {})).items():
        i = names.index(name) if name in names else len(names) + list(p.get("bands", {})).index(name)
        low, high = _floats(band.get("low", [])), _floats(band.get("high", []))
        n = min(len(x), len(low), len(high))
        ax.fill_between(x[:n], low[:n], high[:n], color=colors[i % len(colors)], alpha=0.2, linewidth=0,
                        label=None if name in names else f"{name} band")
    for i, name in enumerate(names):
        ys = _floats(p["series"][name])
        n = min(len(x), len(ys))
        ax.plot(x[:n], ys[:n], marker="o", markersize=3, linewidth=1.4, label=str(name),
                color=colors[i % len(colors)])


def _image(ax: Any, p: Mapping[str, Any], colors: Sequence[Any]) -> None:
    from matplotlib import image as mpimg

    data = base64.b64decode(str(p.get("png_base64", "")))
    ax.imshow(mpimg.imread(io.BytesIO(data), format="png"))
    ax.set_axis_off()


def _png_shape(p: Mapping[str, Any]) -> tuple[int, int]:
    from matplotlib import image as mpimg

    try:
        arr = mpimg.imread(io.BytesIO(base64.b64decode(str(p.get("png_base64", "")))), format="png")
        return int(arr.shape[0]), int(arr.shape[1])
    except Exception:  # a bad image is reported by the drawing step
        return 200, 190


def image_grid_png(cells: Sequence[Sequence[Any]], row_labels: Sequence[str], col_labels: Sequence[str], *,
                   ok: Sequence[Sequence[bool]] | None = None, title: str = "", cell_in: float = 1.15,
                   dpi: int = 100) -> bytes:
    """A labelled grid of RGB images (``cells[r][c]``: uint8 (3, H, W) or (H, W, 3), or None) as PNG bytes.

    ``ok[r][c] = False`` frames a cell red and marks it "failed" (e.g. a feature visualization
    that did not pass its success check).

    Example:
        >>> png = image_grid_png([[np.zeros((3, 8, 8), np.uint8)]], ["ch 0"], ["I"])  # doctest: +SKIP
        >>> png[:4] == b"\x89PNG"  # doctest: +SKIP
        True
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nrows, ncols = len(row_labels), len(col_labels)
    fig = Figure(figsize=(cell_in * ncols + 0.9, cell_in * nrows + (0.2 + 0.2 * (title.count("\n") + 1) if title
                                                                      else 0.2)), dpi=dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, nrows), max(1, ncols), squeeze=False)
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r][c]
            img = cells[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None:
                arr = np.asarray(img)
                ax.imshow(arr.transpose(1, 2, 0) if arr.ndim == 3 and arr.shape[0] == 3 else arr)
            failed = ok is not None and not ok[r][c]
            for spine in ax.spines.values():
                spine.set_edgecolor("red" if failed else "0.8")
                spine.set_linewidth(2.5 if failed else 0.5)
            if failed:
                ax.text(0.5, 0.08, "failed", color="red", fontsize=7, ha="center", transform=ax.transAxes,
                        bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "edgecolor": "none"})
            if r == 0:
                ax.set_title(str(col_labels[c]), fontsize=9)
            if c == 0:
                ax.set_ylabel(str(row_labels[r]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


_DRAW = {"hist": _hist, "scatter": _scatter, "bars": _bars, "lines": _lines, "images": _image}


def render_figure(spec: Mapping[str, Any], *, dpi: int = 100) -> bytes:
    """Render one figure of the contract to PNG bytes.

    Example:
        >>> png = render_figure({"type": "hist", "title": "mix ratio", "xlabel": "M", "ylabel": "channels",
        ...                      "panels": [{"label": "layer1.0", "edges": [0, .5, 1], "counts": [3, 5]}]})
        >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kind = spec.get("type")
    if kind not in _DRAW:
        raise ValueError(f"unknown figure type {kind!r}; expected one of {FIGURE_TYPES}")
    panels = list(spec.get("panels", [])) or [{}]
    # Feature-visualization grids hold many small images; plots need room for axes and ticks.
    max_cols, pw, ph = (8, 1.9, 2.0) if kind == "images" else (_MAX_COLS, _PANEL_W, _PANEL_H)
    if kind == "images" and len(panels) == 1:  # one grid: show it at its own pixel size
        h, w = _png_shape(panels[0])
        pw, ph = max(1.0, w / dpi), max(1.0, h / dpi) + 0.3
    if kind == "bars":  # grouped bars need room per bar: categories x series
        n_bars = max(len(p.get("categories", [])) * max(1, len(p.get("series", {}))) for p in panels)
        pw = min(12.0, max(pw, 0.16 * n_bars + 1.5))
        max_cols = max(1, int(14 // pw))
    ncols = min(max_cols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig_w = max(4.8, pw * ncols)
    title_h = 0.3 + 0.2 * len(_fit(str(spec["title"]), fig_w, 11).splitlines()) if spec.get("title") else 0.0
    fig = Figure(figsize=(fig_w, ph * nrows + title_h), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    colors = [f"C{i}" for i in range(10)]
    axes = fig.subplots(nrows, ncols, squeeze=False)
    legend: tuple[list[Any], list[str]] = ([], [])
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_axis_off()  # unused cell of the grid
            continue
        p = panels[i]
        _DRAW[kind](ax, p, colors)
        if p.get("label"):
            ax.set_title(str(p["label"]), fontsize=9)
        if kind != "images":
            ax.set_xlabel(str(spec.get("xlabel", "")), fontsize=8)
            ax.set_ylabel(str(spec.get("ylabel", "")), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.25, linewidth=0.5)
            if kind in ("bars", "lines") and not legend[0]:
                legend = ax.get_legend_handles_labels()
    if legend[0]:
        # One legend per figure, outside the axes: the series are the same in every panel,
        # and a legend inside a panel hides the curves it explains.
        fig.legend(*legend, loc="outside right center", fontsize=8, frameon=False)
    if spec.get("title"):  # wrapped to the figure's width: a long title is never cropped at both sides
        fig.suptitle(_fit(str(spec["title"]), fig.get_figwidth(), 11), fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _fit(title: str, width_in: float, fontsize: float) -> str:
    """``title`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points (a character is at most
    about 0.62 em wide in the default sans-serif face)."""
    import textwrap

    per_line = max(12, int(width_in * 72 / (fontsize * 0.62)) - 2)
    return "\n".join(textwrap.wrap(title, per_line, break_long_words=False)) or title


def has_data(spec: Mapping[str, Any]) -> bool:
    """True when some panel of a figure holds a finite number (or an image) to draw: an inconclusive claim's
    figure of NaNs or empty lists is left out of the reports rather than drawn as empty axes.

    Example:
        >>> has_data({"type": "lines", "panels": [{"x": [1, 2], "series": {"S*": [None, None]}}]})
        False
        >>> has_data({"type": "hist", "panels": [{"edges": [0, 1], "counts": [3]}]})
        True
    """
    def finite(xs: Any) -> bool:
        return any(math.isfinite(to_float(x)) for x in (xs or []) if not isinstance(x, (list, tuple, dict)))

    for p in spec.get("panels") or []:
        if not isinstance(p, Mapping):
            continue
        if p.get("png_base64") or finite(p.get("counts")) or finite(p.get("y")):
            return True
        if any(finite(ys) for ys in dict(p.get("series") or {}).values()):
            return True
    return False


def result_figures(result: Mapping[str, Any]) -> list[tuple[str, str, bytes | str]]:
    """Every figure of one claim result as ``(name, title, png_bytes)``, in name order.

    A figure that cannot be drawn gives ``(name, title, "error message")`` instead, so one
    malformed figure never costs the whole report.

    Example:
        >>> result_figures({"figures": {}})
        []
    """
    out: list[tuple[str, str, bytes | str]] = []
    for name in sorted(result.get("figures") or {}):
        spec = result["figures"][name]
        title = str(spec.get("title", name)) if isinstance(spec, Mapping) else name
        if isinstance(spec, Mapping) and spec.get("type") in _DRAW and not has_data(spec):
            continue  # nothing to draw (e.g. an inconclusive C10 without curves): no empty axes
        try:
            out.append((name, title, render_figure(spec)))
        except Exception as exc:  # a report must survive a bad figure; the message is shown instead
            out.append((name, title, f"{type(exc).__name__}: {exc}"))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def render_all(report: Mapping[str, Any]) -> dict[tuple[str, str, str], list[tuple[str, str, bytes | str]]]:
    """:func:`result_figures` of every result, keyed by (model, backend, claim); render once,
    then pass to both :func:`write_pngs` and the HTML renderer."""
    return {result_key(r): result_figures(r) for r in report.get("results", [])}


def write_pngs(report: Mapping[str, Any], directory: str | Path,
               rendered: Mapping[tuple[str, str, str], Any] | None = None) -> list[Path]:
    """Write every figure of a report as ``DIR/<model>_<backend>_<claim>_<figure>.png``.
    ``rendered`` reuses the output of :func:`render_all`.

    Example:
        >>> write_pngs(report, "figures")  # doctest: +SKIP
        [PosixPath('figures/zoo_resnet18-synth96_torch_C2_mix_hist.png')]
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    rendered = rendered if rendered is not None else render_all(report)
    for r in report.get("results", []):
        for name, _, png in rendered.get(result_key(r), []):
            if isinstance(png, bytes):
                stem = _slug(f"{r.get('model', '')}_{backend_label(r)}_{r.get('claim', '')}_{name}")
                path = directory / f"{stem}.png"
                path.write_bytes(png)
                written.append(path)
    return written
