"""GitHub-flavoured Markdown report, sized for a pull-request comment.

Layout: a one-line header (seed, versions), the baseline verdict and its drifts (what a
reviewer needs first), one table per model[backend], then the cross-architecture matrix
when the run covered several. Cells are escaped so a ``|`` or a newline in a title or a
note cannot break the table.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from resstream_assert.formatting import feffect, fnorm, fp
from resstream_assert.keys import model_label, model_pairs, pair_of
from resstream_assert.report._common import agreement, gate_label, matrix, show_matrix, stability_requested, stability_text, titles

__all__ = ["render_markdown", "md_table", "md_escape", "VERDICT_MD"]

#: Verdict cells: an emoji makes a 12-column matrix scannable in a PR comment.
VERDICT_MD = {"holds": "✅ holds", "fails": "❌ fails", "inconclusive": "⚠️ inconclusive",
              "not_applicable": "➖ n/a"}


def md_escape(text: Any) -> str:
    """Make ``text`` safe inside a table cell (pipes escaped, line breaks flattened).

    Example:
        >>> md_escape("a|b\\nc")
        'a\\\\|b c'
    """
    s = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(s.splitlines()).strip()


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A GFM table; every row is padded or cut to the header's width. ``align`` has one
    character per column: ``l``, ``r`` or ``c`` (default left).

    Example:
        >>> print(md_table(["a", "b"], [[1, "x|y"]], align="rl"))
        | a | b |
        |---:|:---|
        | 1 | x\\|y |
    """
    n = len(header)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    sep = [marks.get(a, ":---") for a in (align.ljust(n, "l")[:n])]
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "|".join(sep) + "|"]
    for row in rows:
        cells = [md_escape(c) for c in list(row)[:n]] + [""] * max(0, n - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(v: str) -> str:
    return VERDICT_MD.get(v, v or "–")


def _model_table(results: Sequence[Mapping[str, Any]], stability: bool = False) -> str:
    rows = []
    for r in results:
        gate = gate_label(r)
        rows.append([r.get("claim", ""), r.get("title", ""), _verdict(str(r.get("verdict", ""))),
                     feffect(r.get("effect"), r.get("ci_low"), r.get("ci_high")), fp(r.get("p_adjusted")),
                     r.get("n", ""), (gate + "; " if gate else "") + str(r.get("reason", ""))])
        if stability:
            text = stability_text(r, short=True) or "not re-evaluated"
            rows[-1].append(f"⚠️ **{text}**" if (r.get("stability") or {}).get("unstable") else text)
    header = ["claim", "title", "verdict", "effect [95% CI]", "p (adj.)", "n", "note"]
    return md_table(header + (["verdict stability"] if stability else []), rows, align="llllrrll")


def _matrix_table(report: Mapping[str, Any]) -> str:
    pairs, claims, cells = matrix(report)
    rows = [[model_label(m, b)] + [_verdict(cells.get((m, b, c), "")) for c in claims] for m, b in pairs]
    legend = "; ".join(f"**{c}** {t}" for c, t in titles(report.get("results", []), report).items() if t)
    return md_table(["model[backend]"] + claims, rows) + (f"\n\n{legend}" if legend else "")


def _baseline_section(diff: Mapping[str, Any], max_rows: int) -> list[str]:
    from resstream_assert.gate.baseline import TABLE_HEADER, BaselineDiff

    entries = BaselineDiff.from_dict(diff).notable()
    counts = diff.get("counts", {})
    word = "❌ **baseline gate failed**" if diff.get("failed") else "✅ baseline gate passed"
    out = [f"{word}: `{diff.get('path', '')}` with rules "
           + ", ".join(f"`{r}`" for r in diff.get("rules", []))
           + f" ({counts.get('FAIL', 0)} FAIL, {counts.get('warn', 0)} warn, {counts.get('missing', 0)} missing, "
           f"{counts.get('new', 0)} new, {counts.get('ok', 0)} ok)", ""]
    out += [f"> {n}" for n in diff.get("notes", [])]
    if entries:
        entries.sort(key=lambda e: e.status != "FAIL")  # failures first, stable otherwise
        out += [md_table(TABLE_HEADER, [e.row() for e in entries[:max_rows]]), ""]
        if len(entries) > max_rows:
            out += [f"… and {len(entries) - max_rows} more rows (see the JSON report).", ""]
    return out


def render_markdown(report: Mapping[str, Any], *, max_drift_rows: int = 50) -> str:
    """The Markdown report of a report dict (``ReportCollector.to_json()`` or a file read back).

    Example:
        >>> md = render_markdown({"seed": 0, "results": [{"model": "m", "backend": "torch",
        ...     "claim": "C1", "title": "t", "verdict": "holds", "effect": 0.5, "n": 3}]})
        >>> "| C1 | t | ✅ holds |" in md
        True
    """
    v = report.get("versions") or {}
    results = report.get("results", [])
    head = (f"seed `{report.get('seed')}` · resstream_assert {report.get('resstream_assert') or v.get('resstream_assert') or '?'}"
            f" · torch {v.get('torch') or '-'} · onnxruntime {v.get('onnxruntime') or '-'}"
            f" · {report.get('datetime', '')}")
    out = ["## Residual-stream claims (resstream_assert)", "", head, ""]
    for label, info in (report.get("model_info") or {}).items():  # what each model was shown
        out += [f"- `{label}`: input {info.get('input_size')} px, normalisation {fnorm(info.get('normalisation'))}"]
    if report.get("model_info"):
        out += [f"- probe photographs resized by `{(report.get('config') or {}).get('resize') or 'crop'}`", ""]
    if report.get("baseline"):
        out += ["### Baseline", ""] + _baseline_section(report["baseline"], max_drift_rows)
    if not results:
        out += ["_No claim results were recorded in this run._", ""]
    for m, b in model_pairs(results):
        out += [f"### `{model_label(m, b)}`", ""]
        out += [_model_table([r for r in results if pair_of(r) == (m, b)], stability_requested(report)), ""]
    if show_matrix(report):
        out += ["### Cross-architecture matrix", "", _matrix_table(report), ""]
    verdicts, kappa = agreement(report)
    if verdicts or kappa:
        out += ["### Stimulus agreement: exemplars vs featviz", ""]
    if verdicts:
        out += [md_table(["model[backend]", "claim", "exemplars", "featviz", "verdicts"],
                         [[v[0], v[1], _verdict(v[2]), _verdict(v[3]), v[4]] for v in verdicts]), ""]
    if kappa:
        out += ["Cohen's kappa of the skip / mix / overwrite categories per block (channels defined under both):", "",
                md_table(["model[backend]", "block", "kappa [95% CI]", "n", "p (adj.)", "verdict", "note"],
                         [[k[0], k[1], feffect(k[2], k[3], k[4]), k[5], fp(k[6]), _verdict(k[7]), k[8]] for k in kappa],
                         align="llllrll"), ""]
    return "\n".join(out).rstrip() + "\n"
