"""One self-contained HTML report: inline CSS, figures as base64 PNG data URIs, no assets.

Sections, the answer first: header (versions, seed, machine, config, folded), the tally of gated
claims, the cross-architecture matrix, the baseline diff, the summary table, then one section per
model and claim with its per-block table (blocks x quantities) and its figures. Every table sits in
a container that scrolls sideways, so the page itself is never wider than the window. Every string from a result is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any, Mapping, Sequence

from resstream_assert.formatting import feffect, fnorm, fnum, fp
from resstream_assert.keys import backend_label, model_label, model_pairs, pair_of, result_key
from resstream_assert.report._common import (agreement, claim_info, effect_unit, gate_label, gated_tally, matrix,
                                             show_matrix, stability_requested, stability_text, titles)

__all__ = ["render_html"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1280px;
padding:0 1em;color:#1f2328;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
h3{margin-top:1.4em}.meta{color:#59636e}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #d0d7de;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}.answer{font-size:1.25em;font-weight:600;margin:.4em 0}
h1,h2,h3,figcaption,p{overflow-wrap:anywhere}
.v{border-radius:.8em;padding:.05em .6em;font-weight:600;white-space:nowrap}
.v-holds{background:#dafbe1;color:#116329}.v-fails{background:#ffebe9;color:#a40e26}
.v-inconclusive{background:#fff8c5;color:#7d4e00}.v-not_applicable{background:#eaeef2;color:#57606a}
.s-FAIL{color:#a40e26;font-weight:700}.s-warn{color:#7d4e00}
figure{margin:.8em 0}figure img{max-width:100%;height:auto;box-sizing:border-box;border:1px solid #eaeef2}figcaption{color:#59636e;font-size:.85em}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}code{background:#f6f8fa;padding:0 .25em}
.err{color:#a40e26}.facts{display:flex;flex-wrap:wrap;gap:.2em 1.4em;margin:.6em 0;font-size:.88em}
.facts div{overflow-wrap:anywhere}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _n(text: str) -> str:
    """A formatted number as the page shows it: a missing one (NaN) as a dash, never a raw ``nan``."""
    return "–" if text in ("nan", "") else text


def _feffect(*args: Any) -> str:
    return _n(feffect(*args))


def _fnum(x: Any) -> str:
    return _n(fnum(x))


def _fp(x: Any) -> str:
    return _n(fp(x))


def _verdict(v: Any) -> str:
    v = str(v or "")
    return f'<span class="v v-{_e(v)}">{_e(v.replace("_", " ") or "–")}</span>' if v else "–"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], num: Sequence[int] = ()) -> str:
    """``rows`` hold already-escaped HTML; columns in ``num`` are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _anchor(r: Mapping[str, Any]) -> str:
    return "r-" + re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(result_key(r))).strip("-")


def _kv(d: Mapping[str, Any]) -> str:
    rows = [[_e(k), _e(json.dumps(v) if isinstance(v, (list, dict)) else v)] for k, v in sorted(d.items())]
    return _table(["key", "value"], rows)


def _header(report: Mapping[str, Any]) -> str:
    v = report.get("versions") or {}
    line = (f"seed <code>{_e(report.get('seed'))}</code> · resstream_assert {_e(report.get('resstream_assert'))}"
            f" · torch {_e(v.get('torch') or '-')} · onnxruntime {_e(v.get('onnxruntime') or '-')}"
            f" · {_e(report.get('datetime', ''))} · {_e(report.get('duration_s', ''))} s")
    run = (f"<details><summary>Versions, machine and configuration</summary><h3>Versions</h3>{_kv(v)}"
           f"<h3>Machine</h3>{_kv(report.get('machine') or {})}<h3>Configuration</h3>"
           f"{_kv(report.get('config') or {})}</details>")
    return f'<h1>Residual-stream claims</h1><p class="meta">{line}</p>{_preprocessing(report)}{run}'


def _preprocessing(report: Mapping[str, Any]) -> str:
    """What each model was shown: input size, normalisation (and where it came from), probe images and resize."""
    info = report.get("model_info") or {}
    if not info:
        return ""
    resize = (report.get("config") or {}).get("resize") or "crop"
    rows = [[_e(k), _e(i.get("input_size", "")), _e(fnorm(i.get("normalisation"))), _e(i.get("images", ""))]
            for k, i in info.items()]
    return (f'<h3>Preprocessing</h3><p class="meta">probe photographs resized by <code>{_e(resize)}</code></p>'
            + _table(["model[backend]", "input px", "normalisation", "probe images"], rows, num=(1, 3)))


def _summary(report: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> str:
    rows = [[_e(model_label(r.get("model", ""), backend_label(r))),
             f'<a href="#{_anchor(r)}">{_e(r.get("claim", ""))}</a>', _e(claim_info(report, r)["title"]),
             _verdict(r.get("verdict")), _e(_feffect(r.get("effect"), r.get("ci_low"), r.get("ci_high"))),
             _e(_fp(r.get("p_value"))), _e(_fp(r.get("p_adjusted"))), _e(r.get("n", "")),
             _e("; ".join(x for x in (gate_label(r), str(r.get("reason", ""))) if x))] for r in results]
    header = ["model[backend]", "claim", "title", "verdict", "effect [95% CI]", "p", "p (adj.)", "n", "note"]
    if stability_requested({"results": results}):
        header.append("verdict stability")
        for row, r in zip(rows, results):
            text = stability_text(r, short=True) or "not re-evaluated"
            unstable = (r.get("stability") or {}).get("unstable")
            row.append(f'<span class="s-FAIL">{_e(text)}</span>' if unstable else _e(text))
    return "<h2>Summary</h2>" + _table(header, rows, num=(4, 5, 6, 7))


def _matrix(report: Mapping[str, Any]) -> str:
    pairs, claims, cells = matrix(report)
    rows = [[_e(model_label(m, b))] + [_verdict(cells.get((m, b, c))) for c in claims] for m, b in pairs]
    legend = "; ".join(f"<b>{_e(c)}</b> {_e(t)}" for c, t in titles(report.get("results", []), report).items() if t)
    return ("<h2>Cross-architecture matrix</h2><p class=\"meta\">One row per model and backend, one column per "
            f"claim.</p>{_table(['model[backend]'] + claims, rows)}<p class=\"meta\">{legend}</p>")


def _agreement(report: Mapping[str, Any]) -> str:
    verdicts, kappa = agreement(report)
    if not (verdicts or kappa):
        return ""
    out = "<h2>Stimulus agreement: exemplars vs featviz</h2>"
    if verdicts:
        out += _table(["model[backend]", "claim", "exemplars", "featviz", "verdicts"],
                      [[_e(v[0]), _e(v[1]), _verdict(v[2]), _verdict(v[3]), _e(v[4])] for v in verdicts])
    if kappa:
        out += ("<p class=\"meta\">Cohen's kappa of the skip / mix / overwrite categories per block, on the channels "
                "defined under both sources.</p>"
                + _table(["model[backend]", "block", "kappa [95% CI]", "n", "p (adj.)", "verdict", "note"],
                         [[_e(k[0]), _e(k[1]), _e(_feffect(k[2], k[3], k[4])), _e(k[5]), _e(_fp(k[6])), _verdict(k[7]),
                           _e(k[8])] for k in kappa], num=(3, 4)))
    return out


def _baseline(diff: Mapping[str, Any]) -> str:
    from resstream_assert.gate.baseline import TABLE_HEADER, BaselineDiff

    d = BaselineDiff.from_dict(diff)
    word = '<span class="v v-fails">gate failed</span>' if d.failed else '<span class="v v-holds">gate passed</span>'
    c = d.counts()
    out = (f"<h2>Baseline</h2><p>{word} against <code>{_e(d.baseline_path)}</code>, rules "
           + ", ".join(f"<code>{_e(r)}</code>" for r in d.rules)
           + f" — {c.get('FAIL', 0)} FAIL, {c.get('warn', 0)} warn, {c.get('missing', 0)} missing, "
           f"{c.get('new', 0)} new, {c.get('ok', 0)} ok.</p>")
    out += "".join(f'<p class="meta">{_e(n)}</p>' for n in d.notes)
    rows = []
    for e in sorted(d.notable(), key=lambda e: e.status != "FAIL"):
        cells = [_e(x) for x in e.row()]
        cells[-1] = f'<span class="s-{_e(e.status)}">{cells[-1]}</span>'
        rows.append(cells)
    return out + (_table(TABLE_HEADER, rows) if rows else "")


_GROUPED = (re.compile(r"^(?P<row>[^:]+):(?P<col>.+)$"), re.compile(r"^(?P<col>.+)_z(?P<row>[0-9][0-9.]*)$"))


def _split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``values`` as plain quantities and a grid: ``"layer1.0:skip"`` is block layer1.0, quantity skip;
    ``"acc_intact_z1.5"`` is zoom 1.5, quantity acc_intact (a table of blocks x quantities, not 34 columns).

    Example:
        >>> _split_values({"rho": 1, "layer1.0:skip": 3, "acc_z2": 0.5})
        ({'rho': 1}, {'layer1.0': {'skip': 3}, 'zoom 2': {'acc': 0.5}})
    """
    plain: dict[str, Any] = {}
    grid: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        m = next((m for m in (rx.match(k) for rx in _GROUPED) if m), None)
        if m is None:
            plain[k] = v
        else:
            row = m["row"] if ":" in k else f"zoom {m['row']}"
            grid.setdefault(row, {})[m["col"]] = v
    return plain, grid


def _grid_table(grid: Mapping[str, Mapping[str, Any]], corner: str) -> str:
    cols = list(dict.fromkeys(c for row in grid.values() for c in row))
    return _table([corner] + cols, [[_e(name)] + [_e(_fnum(row.get(c))) if c in row else "" for c in cols]
                                    for name, row in grid.items()], num=tuple(range(1, len(cols) + 1)))


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    split = [_split_values(r.get("values") or {}) for r in rows]
    value_keys = sorted({k for plain, _ in split for k in plain})
    header = ["block", "verdict", "statistic", "effect [95% CI]", "p", "p (adj.)", "n"] + value_keys + ["note"]
    body = [[_e(r.get("block", "")), _verdict(r.get("verdict")), _e(_fnum(r.get("statistic"))),
             _e(_feffect(r.get("effect"), r.get("ci_low"), r.get("ci_high"))), _e(_fp(r.get("p_value"))),
             _e(_fp(r.get("p_adjusted"))), _e(r.get("n", ""))]
            + [_e(_fnum(plain[k])) if k in plain else "" for k in value_keys]
            + [_e(r.get("note", ""))] for r, (plain, _) in zip(rows, split)]
    out = _table(header, body, num=tuple(range(2, 7 + len(value_keys))))
    for r, (_, grid) in zip(rows, split):
        if grid:
            out += f'<p class="meta">{_e(r.get("block", ""))}:</p>' + _grid_table(grid, "block")
    return out


def _facts(facts: Mapping[str, Any]) -> str:
    """Name-value pairs that wrap to the page's width (a one-row table of them is as wide as their count)."""
    return '<div class="facts">' + "".join(f"<div><b>{_e(k)}</b> {_e(v)}</div>" for k, v in facts.items()) + "</div>"


def _figures(figs: Sequence[tuple[str, str, Any]]) -> str:
    out = []
    for name, title, png in figs:
        if isinstance(png, bytes):
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            out.append(f'<figure><img alt="{_e(title)}" src="{uri}"><figcaption>{_e(name)}: {_e(title)}'
                       "</figcaption></figure>")
        else:
            out.append(f'<p class="err">figure {_e(name)} could not be drawn: {_e(png)}</p>')
    return "".join(out)


def _claim_section(r: Mapping[str, Any], figs: Sequence[tuple[str, str, Any]], info: Mapping[str, str]) -> str:
    facts = {"effect [95% CI]": _feffect(r.get("effect"), r.get("ci_low"), r.get("ci_high")),
             "statistic": _fnum(r.get("statistic")), "p": _fp(r.get("p_value")), "p (adj.)": _fp(r.get("p_adjusted")),
             "n": r.get("n", ""), "method": r.get("method", ""), "seed": r.get("seed", ""),
             "gate": "yes" if r.get("gate", True) else "report-only", "test": r.get("nodeid", "")}
    facts.update({f"threshold {k}": _fnum(v) for k, v in sorted((r.get("thresholds") or {}).items())})
    plain, grid = _split_values(r.get("values") or {})
    facts.update({f"value {k}": _fnum(v) for k, v in sorted(plain.items())})
    src = f" ({_e(r['source'])})" if r.get("source") else ""
    out = (f'<h3 id="{_anchor(r)}">{_e(r.get("claim", ""))}: {_e(info["title"])}{src} '
           f'{_verdict(r.get("verdict"))}</h3>')
    if r.get("reason"):
        out += f"<p>{_e(r['reason'])}</p>"
    if effect_unit(info):
        out += f'<p class="meta">{_e(effect_unit(info))}</p>'
    if r.get("stability"):
        out += f'<p class="meta">Verdict stability: {_e(stability_text(r))}.</p>'
    out += _facts(facts)
    if grid:
        out += _grid_table(grid, "block")
    if r.get("rows"):
        out += _rows_table(r["rows"])
    return out + _figures(figs)


def render_html(report: Mapping[str, Any], *, rendered: Mapping[tuple[str, str, str], Any] | None = None,
                figures: bool = True) -> str:
    """The HTML page of a report dict. ``rendered`` reuses :func:`plots.render_all` output;
    ``figures=False`` skips matplotlib entirely.

    Example:
        >>> page = render_html({"seed": 0, "results": []}, figures=False)
        >>> page.startswith("<!DOCTYPE html>") and "</html>" in page
        True
    """
    results = report.get("results", [])
    if figures and rendered is None:
        from resstream_assert.report.plots import render_all

        rendered = render_all(report)
    rendered = rendered or {}
    parts = [_header(report)]  # the answer first: the tally, the matrix, the gate, then the details
    if results:
        parts.append(f'<p class="answer">{_e(gated_tally(results))}.</p>')
    if show_matrix(report):
        parts.append(_matrix(report))
    if report.get("baseline"):
        parts.append(_baseline(report["baseline"]))
    parts.append(_summary(report, results) if results else "<p>No claim results were recorded in this run.</p>")
    if results and stability_requested(report) and not any(r.get("stability") for r in results):
        parts.append('<p class="meta">Verdict stability was asked for, but no claim here reads responses only.</p>')
    agree = _agreement(report)
    if agree:
        parts.append(agree)
    for m, b in model_pairs(results):
        parts.append(f"<h2>{_e(model_label(m, b))}</h2>")
        for r in results:
            if pair_of(r) == (m, b):
                parts.append(_claim_section(r, rendered.get(result_key(r), []), claim_info(report, r)))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>resstream_assert report</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
