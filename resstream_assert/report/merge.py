"""Merge the JSON reports of one run's shards (``--resstream-shard i/n`` jobs) into one report.

The shards of a run share everything but the models they ran: the same seed, thresholds and
model list. Merging refuses reports that differ in anything else, since the combined table
and matrix would then compare numbers computed under different settings. Each shard's
timing, versions and machine are kept under ``shards``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from resstream_assert.errors import MergeError
from resstream_assert.report.collect import REPORT_FORMAT, VOLATILE_KEYS, ReportCollector

__all__ = ["merge_reports"]


def _settings(report: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(report.get("config") or {})
    config.pop("shard", None)
    return {"report_format": report.get("report_format"), "seed": report.get("seed"), "config": config}


def merge_reports(reports: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """One report from the reports of a run's shards: results in the run's model order, duplicates refused.

    ``names`` label the reports in error messages (file names). The merged report's
    ``duration_s`` is the longest shard's (they ran side by side).

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
            raise MergeError(f"{name} was run with other settings than {names[0]} (different: {', '.join(keys)}); "
                             "only the shards of one run can be merged")
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
    return merged
