"""Claims over training: one row per checkpoint per claim, as JSON, Markdown and HTML with figures.

The input is the JSON form :func:`resstream_assert.api.trend` returns (nothing here runs a
model)::

    {"format": 1, "checkpoints": [{"label", "spec", "x"}, ...],
     "claims": {"C3": {"title": ..., "rows": [{"checkpoint", "verdict", "effect", "ci_low",
                                               "ci_high", "p_adjusted", "reason"}, ...]}, ...},
     "categories": {"layer2.1": {"skip": [...], "mix": [...], "overwrite": [...]}, ...}}

Rows keep the order the checkpoints were given in; ``x`` is the number in a checkpoint's
label (``epoch-005`` -> 5) when every label has one, else its position.
"""

from __future__ import annotations

import base64
import html
import json
import math
from typing import Any, Mapping, Sequence

from resstream_assert.formatting import feffect, fp
from resstream_assert.keys import claim_sort_key

__all__ = ["TREND_FORMAT", "trend_rows", "trend_figures", "render_trend_markdown", "render_trend_html"]

TREND_FORMAT = 1
CATEGORIES = ("skip", "mix", "overwrite")


def trend_rows(trend: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per (claim, checkpoint), claims in natural order, checkpoints as given.

    Example:
        >>> t = {"checkpoints": [{"label": "e0"}], "claims": {"C3": {"title": "t", "rows": [
        ...     {"checkpoint": "e0", "verdict": "fails", "effect": 0.1, "ci_low": 0, "ci_high": 0.2}]}}}
        >>> [(r["claim"], r["checkpoint"], r["verdict"]) for r in trend_rows(t)]
        [('C3', 'e0', 'fails')]
    """
    out = []
    for claim in sorted(trend.get("claims", {}), key=claim_sort_key):
        for r in trend["claims"][claim]["rows"]:
            out.append({"claim": claim, **r})
    return out


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def trend_figures(trend: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Figure specs (the ``report.plots`` contract): each claim's effect with its CI per checkpoint,
    and the skip / mix / overwrite proportions of every block per checkpoint.

    Example:
        >>> figs = trend_figures({"checkpoints": [{"label": "e0", "x": 0}], "claims": {}, "categories": {
        ...     "layer2.1": {"skip": [0.2], "mix": [0.5], "overwrite": [0.3]}}})
        >>> [f["title"] for f in figs]
        ['Category proportions per block over training']
    """
    xs = [c.get("x", i) for i, c in enumerate(trend.get("checkpoints", []))]
    figs = []
    panels = []
    for claim in sorted(trend.get("claims", {}), key=claim_sort_key):
        rows = trend["claims"][claim]["rows"]
        verdicts = "".join(str(r.get("verdict", "?"))[0].upper() for r in rows)
        panels.append({"label": f"{claim} ({verdicts})", "x": xs,
                       "series": {"effect": [_num(r.get("effect")) for r in rows]},
                       "bands": {"effect": {"low": [_num(r.get("ci_low")) for r in rows],
                                            "high": [_num(r.get("ci_high")) for r in rows]}}})
    if panels:
        figs.append({"type": "lines", "title": "Claim effect with its 95% CI over training (letters: H holds, "
                                               "F fails, I inconclusive, N not applicable, per checkpoint)",
                     "xlabel": "checkpoint", "ylabel": "effect", "panels": panels})
    cats = trend.get("categories", {})
    if cats:
        figs.append({"type": "lines", "title": "Category proportions per block over training",
                     "xlabel": "checkpoint", "ylabel": "share of channels",
                     "panels": [{"label": block, "x": xs,
                                 "series": {k: [_num(v) for v in shares.get(k, [])] for k in CATEGORIES}}
                                for block, shares in cats.items()]})
    return figs


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _effect(r: Mapping[str, Any]) -> str:
    return feffect(_num(r.get("effect")), _num(r.get("ci_low")), _num(r.get("ci_high")))


def render_trend_markdown(trend: Mapping[str, Any]) -> str:
    """The trend as Markdown: a table per claim (checkpoint, verdict, effect [CI], p_adj), then the categories.

    Example:
        >>> print(render_trend_markdown({"checkpoints": [], "claims": {}, "categories": {}}).splitlines()[0])
        # Claims over training
    """
    labels = [c["label"] for c in trend.get("checkpoints", [])]
    out = ["# Claims over training", "",
           "Checkpoints, in the order given: " + ", ".join(f"`{lab}`" for lab in labels), ""]
    for claim in sorted(trend.get("claims", {}), key=claim_sort_key):
        c = trend["claims"][claim]
        out += [f"## {claim}: {c.get('title', '')}", "",
                _md_table(("checkpoint", "verdict", "effect [95% CI]", "p_adj"),
                          [(str(r["checkpoint"]), str(r.get("verdict")), _effect(r), fp(_num(r.get("p_adjusted"))))
                           for r in c["rows"]]), ""]
    cats = trend.get("categories", {})
    if cats:
        out += ["## Category proportions (skip / mix / overwrite) per block", "",
                _md_table(("block", *labels),
                          [(block, *(" / ".join(f"{_num(s.get(k, [math.nan] * len(labels))[i]):.2f}"
                                                for k in CATEGORIES) for i in range(len(labels))))
                           for block, s in cats.items()]), ""]
    return "\n".join(out)


def render_trend_html(trend: Mapping[str, Any]) -> str:
    """One self-contained HTML page: the figures (PNG, inline), then the Markdown tables as HTML tables.

    Example:
        >>> render_trend_html({"checkpoints": [], "claims": {}, "categories": {}}).startswith("<!doctype html>")
        True
    """
    from resstream_assert.report.plots import render_figure

    figs = "".join(f'<figure><img alt="{html.escape(f["title"])}" src="data:image/png;base64,'
                   f'{base64.b64encode(render_figure(f)).decode()}"></figure>' for f in trend_figures(trend))
    body = []
    for claim in sorted(trend.get("claims", {}), key=claim_sort_key):
        c = trend["claims"][claim]
        cells = "".join(f"<tr><td>{html.escape(str(r['checkpoint']))}</td><td>{html.escape(str(r.get('verdict')))}"
                        f"</td><td class=n>{html.escape(_effect(r))}</td><td class=n>"
                        f"{html.escape(fp(_num(r.get('p_adjusted'))))}</td></tr>" for r in c["rows"])
        body.append(f"<h2>{html.escape(claim)}: {html.escape(str(c.get('title', '')))}</h2><div class=scroll><table>"
                    f"<tr><th>checkpoint</th><th>verdict</th><th>effect [95% CI]</th><th>p_adj</th></tr>{cells}"
                    "</table></div>")
    data = json.dumps(trend, allow_nan=False).replace("</", "<\\/")  # raw text inside <script>
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
           "img{max-width:100%}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
           ".n{text-align:right;font-variant-numeric:tabular-nums}.scroll{overflow-x:auto}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Claims over training</title><style>{css}</style>"
            f"</head><body><h1>Claims over training</h1>{figs}{''.join(body)}"
            f"<script type=application/json id=trend-data>{data}</script></body></html>\n")
