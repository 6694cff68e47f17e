"""The terminal summary: a claims table, the cross-architecture matrix and the baseline diff.

Lines are built as segments ``(text, markup)`` so the verdict cell alone is coloured with
the reporter's markup (holds green, fails red, inconclusive yellow, not applicable plain)
and the same lines can be rendered without colour in tests.
"""

from __future__ import annotations

import json

import textwrap
from typing import Any, Iterable, Mapping, Sequence

from resstream_assert.formatting import feffect, fp
from resstream_assert.keys import backend_label, model_label
from resstream_assert.report._common import (SHORT_VERDICT, agreement, claim_info, effect_unit, gate_label,
                                             gated_tally, matrix, show_matrix, stability_requested,
                                             stability_text, titles)

__all__ = ["VERDICT_MARKUP", "claims_table", "matrix_table", "stability_lines", "plain", "write_summary"]

Segment = tuple[str, dict[str, bool]]
Line = list[Segment]

VERDICT_MARKUP: dict[str, dict[str, bool]] = {"holds": {"green": True}, "fails": {"red": True, "bold": True},
                                              "inconclusive": {"yellow": True}, "not_applicable": {}}


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], coloured: Sequence[int],
          verdicts: Sequence[Sequence[str]]) -> list[Line]:
    """Left-aligned columns; cells at indexes ``coloured`` get the verdict markup of ``verdicts``."""
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    out: list[Line] = [[("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), {})],
                       [("-" * (sum(widths) + 2 * (len(widths) - 1)), {})]]
    for row, vs in zip(rows, verdicts):
        line: Line = []
        for i, (cell, w) in enumerate(zip(row, widths)):
            text = cell.ljust(w) + ("  " if i < len(row) - 1 else "")
            markup = VERDICT_MARKUP.get(vs[coloured.index(i)], {}) if i in coloured else {}
            line.append((text, markup))
        out.append(line)
    return out


def claims_table(report: Mapping[str, Any], width: int | None = None) -> list[Line]:
    """One line per claim result: model[backend], claim, verdict, effect [CI], adjusted p, n and the claim's title;
    under it, indented and wrapped to ``width`` columns (never cut), what the effect measures and the note (the
    reason for the verdict, report-only, an unstable verdict).

    Example:
        >>> lines = claims_table({"results": [{"model": "m", "backend": "torch", "claim": "C1", "title": "Spectrum",
        ...     "verdict": "holds", "effect": 0.5, "ci_low": 0.4, "ci_high": 0.6, "p_adjusted": 0.01, "n": 9,
        ...     "reason": "every block has all three kinds"}]}, width=80)
        >>> [plain(line) for line in lines[2:]]
        ['m[torch]        C1     holds    +0.500 [+0.400, +0.600]  0.0100  9  Spectrum', '    every block has all three kinds']
    """
    width = width or 120
    rows, verdicts, extra = [], [], []
    for r in report.get("results", []):
        unstable = stability_text(r, short=True) if (r.get("stability") or {}).get("unstable") else ""
        info = claim_info(report, r)
        note = "; ".join(x for x in (unstable.replace("unstable", "UNSTABLE", 1), gate_label(r),
                                     str(r.get("reason", ""))) if x)
        v = str(r.get("verdict", ""))
        rows.append([model_label(str(r.get("model", "")), backend_label(r)), str(r.get("claim", "")), v,
                     feffect(r.get("effect"), r.get("ci_low"), r.get("ci_high")), fp(r.get("p_adjusted")),
                     str(r.get("n", ""))])
        verdicts.append([v])
        extra.append((info["title"], [t for t in (effect_unit(info), note) if t]))
    grid = _grid(["model[backend]", "claim", "verdict", "effect [95% CI]", "p_adj", "n"], rows, [2], verdicts)
    out = grid[:2]
    for line, (title, notes) in zip(grid[2:], extra):
        used = len(plain(line))
        if title and used + 2 + len(title) <= width:
            line = line + [("  " + title, {})]
            title = ""
        out.append(line)
        out += [[(text, {})] for item in ([title] if title else []) + notes for text in _wrap(item, width)]
    return out


def _wrap(text: str, width: int, indent: str = "    ") -> list[str]:
    """``text`` wrapped to ``width`` columns under ``indent``; words are never cut (a longer word overflows)."""
    return textwrap.wrap(text, width=max(20, width - 1), initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]


def matrix_table(report: Mapping[str, Any], width: int = 120) -> list[Line]:
    """The cross-architecture matrix: rows model[backend], columns claim ids, cells verdicts.

    Example:
        >>> rep = {"results": [{"model": a, "backend": "torch", "claim": "C1", "verdict": v}
        ...                    for a, v in (("r18", "holds"), ("r50", "fails"))]}
        >>> [plain(line) for line in matrix_table(rep)][2:4]
        ['r18[torch]      holds', 'r50[torch]      FAILS']
    """
    pairs, claims, cells = matrix(report)
    rows, verdicts = [], []
    for m, b in pairs:
        vs = [cells.get((m, b, c), "") for c in claims]
        rows.append([model_label(m, b)] + [SHORT_VERDICT.get(v, v or "-") for v in vs])
        verdicts.append(vs)
    out = _grid(["model[backend]"] + claims, rows, list(range(1, len(claims) + 1)), verdicts)
    names = titles(report.get("results", []), report)
    legend = [text for c in claims if names.get(c) for text in _wrap(f"{c}: {names[c]}", width, "  ")]
    return out + [[(text, {})] for text in legend]


def stability_lines(report: Mapping[str, Any]) -> list[Line]:
    """One line per result: how often its verdict flipped over probe half-samples and seeds (unstable ones red).

    Example:
        >>> rep = {"results": [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds",
        ...     "stability": {"runs": 20, "flips": 1, "rate": 0.05, "ci_low": 0.001, "ci_high": 0.249,
        ...                   "n_images": 256, "of_images": 512, "unstable": 0.0}}]}
        >>> plain(stability_lines(rep)[0])[:70]
        'm[torch]  C1  holds  stable at n=512: flips in 1/20 re-evaluations (5%'
    """
    results = report.get("results", [])
    cells = [(model_label(str(r.get("model", "")), backend_label(r)), str(r.get("claim", "")),
              str(r.get("verdict", ""))) for r in results]
    widths = [max((len(c[i]) for c in cells), default=0) for i in range(3)]
    out: list[Line] = []
    for cell, r in zip(cells, results):
        text = stability_text(r) or ("not re-evaluated (feature-visualization stimuli)"
                                     if r.get("stimuli", "exemplars") != "exemplars"
                                     else "not re-evaluated (the claim runs the model again)")
        markup = {"red": True, "bold": True} if (r.get("stability") or {}).get("unstable") else {}
        out.append([("".join(c.ljust(w) + "  " for c, w in zip(cell, widths)), {}), (text, markup)])
    return out


def agreement_tables(report: Mapping[str, Any]) -> list[Line]:
    """Exemplar vs featviz verdicts side by side, then Cohen's kappa of the categories per block.

    Example:
        >>> rs = [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"},
        ...       {"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds", "stimuli": "featviz"}]
        >>> plain(agreement_tables({"results": rs})[2])
        'm[torch]        C1     holds      holds    same'
    """
    verdicts, kappa = agreement(report)
    out: list[Line] = []
    if verdicts:
        out += _grid(["model[backend]", "claim", "exemplars", "featviz", "verdicts"], verdicts, [2, 3],
                     [[v[2], v[3]] for v in verdicts])
    if kappa:
        rows = [[k[0], k[1], feffect(k[2], k[3], k[4]), str(k[5] if k[5] is not None else ""), fp(k[6]), k[7], k[8]]
                for k in kappa]
        out.append([("", {})])
        out += _grid(["model[backend]", "block", "kappa [95% CI]", "n", "p_adj", "verdict", "note"],
                                    rows, [5], [[k[7]] for k in kappa])
    return out


def plain(line: Line) -> str:
    """A line without markup (for tests and logs)."""
    return "".join(text for text, _ in line).rstrip()


def _write(tr: Any, lines: Sequence[Line]) -> None:
    for line in lines:
        for text, markup in line[:-1]:
            tr.write(text, **markup)
        text, markup = line[-1] if line else ("", {})
        tr.line(text.rstrip(), **markup)


def write_summary(tr: Any, report: Mapping[str, Any], diff: Any = None, written: Sequence[str] = (),
                  messages: Sequence[str] = ()) -> None:
    """Write the summary to a pytest ``TerminalReporter`` (``write_sep``/``write``/``line``).

    ``diff`` is a :class:`~resstream_assert.gate.baseline.BaselineDiff` or None; ``written``
    lists report files written; ``messages`` are extra lines (e.g. baseline updated).

    Example:
        >>> write_summary(terminalreporter, report_dict)  # doctest: +SKIP
    """
    results = report.get("results", [])
    try:
        width = int(tr.config.get_terminal_writer().fullwidth)
    except Exception:  # a reporter stand-in without a terminal writer
        width = 120
    if results:
        tr.write_sep("=", f"resstream claims (seed {report.get('seed')}): {gated_tally(results)}")
        _write(tr, claims_table(report, width=width))
        if show_matrix(report):
            tr.write_sep("-", "cross-architecture matrix: one row per model and backend")
            _write(tr, matrix_table(report, width=width))
        agree = agreement_tables(report)
        if agree:
            tr.write_sep("-", "stimulus agreement: exemplars vs featviz (verdicts; kappa of skip/mix/overwrite)")
            _write(tr, agree)
        if stability_requested(report):
            tr.write_sep("-", "verdict stability (re-evaluated on probe half-samples with other seeds)")
            _write(tr, stability_lines(report))
        for dup in report.get("duplicates", []):
            tr.write_line(f"note: {dup['claim']} on {model_label(dup['model'], dup['backend'])} was recorded by "
                          f"{len(dup['nodeids'])} tests; the report keeps {dup['nodeids'][0]}", yellow=True)
    if diff is not None:
        failed = diff.failed
        tr.write_sep("-" if results else "=", "resstream baseline " + ("FAILED" if failed else "passed"),
                     red=failed, green=not failed)
        for text in diff.table().splitlines():
            tr.write_line(text, red=" FAIL" in text)
    for msg in messages:
        loud = msg.startswith("resstream: NOTHING WAS DECIDED") or " NOT written" in msg
        for text in msg.splitlines():
            tr.write_line(text, red=loud, bold=loud)
    for path in written:
        tr.write_line(f"resstream report: {path}")


def print_sites(pipeline, refs: Iterable, as_json: bool = False) -> int:
    """Print the residual blocks and canonical sites of each (spec, backend); returns the exit status 0.

    Shared by ``resstream sites`` and ``pytest --resstream-list-sites``.

    Example:
        >>> from resstream_assert.config import RunConfig
        >>> from resstream_assert.pipeline import ModelRef, Pipeline
        >>> print_sites(Pipeline(RunConfig()), [ModelRef("zoo:resnet18-synth96", "torch")])  # doctest: +SKIP
    """
    for ref in refs:
        rmap = pipeline.map(ref.spec, ref.backend)
        loaded = pipeline.loaded(ref.spec, ref.backend)
        notes = [] if loaded is None else [f"{k}: {v}" for k, v in (
            ("input size", loaded.input_size_source), ("weights", loaded.weights)) if v]
        if as_json:
            print(json.dumps(dict(rmap.to_dict(), notes=notes), indent=2), end="\n\n")
        else:
            print("\n".join([rmap.table()] + [f"  {n}" for n in notes]), end="\n\n")
    return 0
