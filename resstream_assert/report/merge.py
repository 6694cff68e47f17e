"""Merge the JSON reports of one run's shards (``--resstream-shard i/n`` jobs) into one report.

The shards of a run share everything but the models they ran: the same seed, thresholds and
model list. Merging refuses reports that differ in anything else, since the combined table
and matrix would then compare numbers computed under different settings. Each shard's
timing, versions and machine are kept under ``shards``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from resstream_assert.errors import MergeError
from resstream_assert.paths import same_file
from resstream_assert.report.collect import REPORT_FORMAT, VOLATILE_KEYS, ReportCollector, report_text

__all__ = ["merge_reports", "incomplete", "check_outputs", "write_all"]


def _settings(report: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(report.get("config") or {})
    config.pop("shard", None)
    return {"report_format": report.get("report_format"), "seed": report.get("seed"), "config": config,
            "resstream_assert": report.get("resstream_assert")}


def incomplete(reports: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """What a set of reports lacks to be one whole run: shards missing or given twice, models of the run's
    model list without any result, no result at all. ``[]`` for a complete run.

    Example:
        >>> incomplete([{"config": {"shard": [1, 2], "models": ["a", "b"]}, "results": []}], ["s1.json"])[:2]
        ['shard 2/2 is missing', 'model a has no result in any report']
    """
    out = []
    shards = [tuple((r.get("config") or {}).get("shard") or ()) for r in reports]
    if any(shards):
        plain = [n for n, s in zip(names, shards) if not s]
        if plain:
            out.append(f"{', '.join(plain)} {'is' if len(plain) == 1 else 'are'} not a shard (run without "
                       "--resstream-shard), the others are")
        counts = sorted({s[1] for s in shards if s})
        if len(counts) > 1:
            out.append(f"the shards split the model list {' and '.join(map(str, counts))} ways")
        n = counts[-1]
        seen: dict[int, str] = {}
        for name, s in zip(names, shards):
            if s and s[0] in seen:
                out.append(f"shard {s[0]}/{n} is given twice ({seen[s[0]]} and {name})")
            elif s:
                seen[s[0]] = name
        out += [f"shard {i}/{n} is missing" for i in range(1, n + 1) if i not in seen]
    ran = {str(r.get("model")) for rep in reports for r in rep.get("results", [])}
    models = list(dict.fromkeys(m for rep in reports for m in (rep.get("config") or {}).get("models") or []))
    out += [f"model {m} has no result in any report" for m in models if m not in ran]
    if not ran:
        out.append("the reports hold no claim result")
    return out


def merge_reports(reports: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None, *,
                  allow_incomplete: bool = False) -> dict[str, Any]:
    """One report from the reports of a run's shards: results in the run's model order, duplicates refused.

    ``names`` label the reports in error messages (file names). The merged report's
    ``duration_s`` is the longest shard's (they ran side by side). An incomplete set (:func:`incomplete`)
    is a :class:`MergeError`; with ``allow_incomplete`` it is merged and the report's ``incomplete`` lists
    what is missing.

    Example:
        >>> merged = merge_reports([read_report("shard1.json"), read_report("shard2.json")])  # doctest: +SKIP
        >>> [s["config"]["shard"] for s in merged["shards"]]  # doctest: +SKIP
        [[1, 2], [2, 2]]
    """
    if not reports:
        raise MergeError("no report to merge")
    names = list(names or [f"report {i + 1}" for i in range(len(reports))])
    first = _settings(reports[0])
    if first["report_format"] != REPORT_FORMAT:
        raise MergeError(f"{names[0]} has report format {first['report_format']}, this version writes {REPORT_FORMAT}")
    for name, rep in zip(names[1:], reports[1:]):
        other = _settings(rep)
        if other != first:
            keys = sorted(k for k in set(first["config"]) | set(other["config"])
                          if first["config"].get(k) != other["config"].get(k))
            keys += [k for k in ("report_format", "seed") if first[k] != other[k]]
            if first["resstream_assert"] != other["resstream_assert"]:
                keys.append(f"resstream_assert version {other['resstream_assert']} vs {first['resstream_assert']}")
            raise MergeError(f"{name} was run with other settings than {names[0]} (different: {', '.join(keys)}); "
                             "only the shards of one run can be merged")
    missing = incomplete(reports, names)
    if missing and not allow_incomplete:
        raise MergeError(f"the reports are not one whole run: {'; '.join(missing)}. Merge every shard of the run "
                         "(or pass --allow-incomplete to merge what is there, marked as incomplete)")
    collector = ReportCollector(config=first["config"], seed=first["seed"])
    seen: dict[tuple, str] = {}
    for name, rep in zip(names, reports):
        for result in rep.get("results", []):
            key = (result.get("model"), result.get("backend"), result.get("claim"))
            if key in seen:
                raise MergeError(f"{key[0]}[{key[1]}] {key[2]} is in both {seen[key]} and {name}: "
                                 "each model belongs to one shard")
            seen[key] = name
            collector.add(result, result.get("nodeid", ""))
    merged = collector.to_json()
    head = reports[0]
    merged.update(versions=head.get("versions"), machine=head.get("machine"),
                  resstream_assert=head.get("resstream_assert"),
                  duration_s=max(float(r.get("duration_s") or 0.0) for r in reports),
                  shards=[{"name": n, **{k: r.get(k) for k in ("config", "versions", "machine", *VOLATILE_KEYS)}}
                          for n, r in zip(names, reports)])
    info = {k: v for r in reports for k, v in (r.get("model_info") or {}).items()}
    if info:
        merged["model_info"] = info
    if missing:
        merged["incomplete"] = missing
    return merged


def check_outputs(outputs: Sequence[tuple[str, str]], protected: Sequence[tuple[str | None, str]],
                  writable: Callable[[str], str]) -> None:
    """``ValueError`` unless every output ``(kind, path)`` can be written (``writable(path)`` is ``""``) and
    none is a ``protected`` file (the baseline, an input report) or another output, symlinks followed.

    Example:
        >>> check_outputs([("json", "b.json")], [("b.json", "the baseline (--baseline)")], lambda p: "")
        Traceback (most recent call last):
        ...
        ValueError: --json b.json: is the baseline (--baseline) (symlinks followed); writing there would overwrite
        it. Give another path.
    """
    for i, (kind, path) in enumerate(outputs):
        why = writable(path)
        if why:
            raise ValueError(f"--{kind} {path}: {why}")
        for other, what in list(protected) + [(p, f"the --{k} output") for k, p in outputs[:i]]:
            if other and same_file(path, other):
                raise ValueError(f"--{kind} {path}: is {what} (symlinks followed); writing there would overwrite it. "
                                 "Give another path.")


def write_all(report: Mapping[str, Any], outputs: Sequence[tuple[str, str]]) -> list[Path]:
    """Write the report as each ``(kind, path)`` (``json``, ``md``, ``html``), all or none: everything is
    rendered first, and a failed write (``OSError``, raised) removes the files already written.

    Example:
        >>> write_all(merged, [("json", "out/m.json"), ("md", "out/m.md")])  # doctest: +SKIP
        [PosixPath('out/m.json'), PosixPath('out/m.md')]
    """
    from resstream_assert.report.html import render_html
    from resstream_assert.report.markdown import render_markdown

    render = {"json": report_text, "md": render_markdown, "html": render_html}
    texts = [(Path(path), render[kind](report)) for kind, path in outputs]
    done: list[Path] = []
    try:
        for path, text in texts:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            done.append(path)
    except OSError:
        for path in done:
            path.unlink(missing_ok=True)
        raise
    return done
