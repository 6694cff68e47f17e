"""Gather claim results from test reports into one report, the primary (JSON) artefact.

Claim tests attach ``ClaimResult.to_dict()`` to ``item.user_properties`` (see
:func:`record_result`). pytest copies ``user_properties`` into every
phase's report, and pytest-xdist ships each report from the worker to the controller, so
the controller's ``pytest_runtest_logreport`` sees every result, whichever worker ran it.
The collector therefore runs on the controller only and de-duplicates by
(model, backend, claim): a result seen in the setup, call and teardown reports, or
recorded twice, counts once.

Ordering is deterministic (models in the order of ``--resstream-model``, then backend,
then claim id in natural order), so a serial run and a ``-n 2`` run write the same JSON
apart from the :data:`VOLATILE_KEYS`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from resstream_assert.keys import claim_sort_key, model_pairs, result_key

__all__ = ["ReportCollector", "VOLATILE_KEYS", "REPORT_FORMAT", "RESULT_PROPERTY", "record_result",
           "package_versions", "machine_info", "write_report", "report_text", "read_report", "check_report",
           "strip_volatile"]

#: Top-level report keys that legitimately differ between two runs of the same config.
VOLATILE_KEYS = ("datetime", "duration_s")

#: Version of the report layout; bumped when a key changes meaning.
REPORT_FORMAT = 1

#: The wire format of a result on its way to the reports: ``(RESULT_PROPERTY, result.to_dict())`` in
#: ``item.user_properties``, which pytest-xdist ships from the worker to the controller with each report.
RESULT_PROPERTY = "resstream_claim"

_PACKAGES = ("resstream_assert", "torch", "torchvision", "numpy", "scipy", "onnx", "onnxruntime",
             "onnxruntime-gpu", "timm", "matplotlib", "pytest", "pytest-xdist")


def package_versions(packages: Iterable[str] = _PACKAGES) -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing is imported).

    Example:
        >>> package_versions(["pytest"])["pytest"]  # doctest: +SKIP
        '9.2.0'
    """
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def machine_info() -> dict[str, Any]:
    """Where the numbers were computed. No host name: reports end up in public PRs.

    Example:
        >>> sorted(machine_info())[:2]
        ['cpu_count', 'machine']
    """
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "processor": platform.processor(), "python_implementation": platform.python_implementation(),
            "cpu_count": os.cpu_count()}


def record_result(node: Any, result: Any) -> None:
    """Attach a :class:`~resstream_assert.results.ClaimResult` to a test item, for the reports.

    The controller then sees every result exactly once, whichever xdist worker ran the test.

    Example:
        >>> record_result(request.node, result)  # doctest: +SKIP
    """
    node.user_properties.append((RESULT_PROPERTY, result.to_dict()))


def _as_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return json.loads(json.dumps(dict(result), allow_nan=False))  # deep, JSON-ready copy
    return result.to_dict()


class ReportCollector:
    """Collects claim results (as their ``to_dict()`` form) and builds the report.

    ``config`` is the run configuration (``RunConfig.to_dict()``), stored as is; ``seed`` is
    the session seed. Duplicate results for one (model, backend, claim) keep the one from
    the smallest nodeid (deterministic under xdist, whatever order reports arrive in);
    a re-run of the same nodeid replaces the earlier result.

    Example:
        >>> c = ReportCollector(config={"models": ["m"]}, seed=0)
        >>> c.add({"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"}, "t.py::test")
        >>> len(c), c.to_json()["results"][0]["nodeid"]
        (1, 't.py::test')
    """

    def __init__(self, config: Mapping[str, Any] | None = None, seed: int | None = None,
                 started: float | None = None) -> None:
        self.config = dict(config or {})
        self.seed = seed if seed is not None else self.config.get("seed")
        self.started = time.time() if started is None else started
        self._results: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._duplicates: dict[tuple[str, str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._results)

    def add(self, result: Any, nodeid: str = "") -> None:
        """Add one result (a ClaimResult or its dict form) recorded by test ``nodeid``."""
        d = _as_dict(result)
        d["nodeid"] = nodeid
        key = result_key(d)
        old = self._results.get(key)
        if old is not None and old["nodeid"] != nodeid:
            self._duplicates.setdefault(key, {old["nodeid"]}).add(nodeid)
            if old["nodeid"] < nodeid:
                return  # keep the smallest nodeid: independent of xdist's arrival order
        self._results[key] = d

    def add_report(self, report: Any) -> int:
        """Add every result in a test report's ``user_properties``; returns how many it held."""
        n = 0
        for prop in getattr(report, "user_properties", ()) or ():
            # After an xdist round trip the (name, value) tuples may arrive as lists.
            if len(prop) == 2 and prop[0] == RESULT_PROPERTY and isinstance(prop[1], Mapping):
                self.add(prop[1], getattr(report, "nodeid", ""))
                n += 1
        return n

    def _sort_key(self, d: Mapping[str, Any]) -> tuple:
        models = list(self.config.get("models") or [])
        model, backend, claim = result_key(d)
        order = models.index(model) if model in models else len(models)
        return (order, model, backend, claim_sort_key(claim), d.get("nodeid", ""))

    def results(self) -> list[dict[str, Any]]:
        """The results in report order (dicts with a ``nodeid`` key)."""
        return sorted(self._results.values(), key=self._sort_key)

    def claim_results(self) -> list[Any]:
        """The results as :class:`~resstream_assert.results.ClaimResult` objects (imports numpy)."""
        from resstream_assert.results import ClaimResult

        return [ClaimResult.from_dict(d) for d in self.results()]

    def to_json(self, finished: float | None = None) -> dict[str, Any]:
        """The report: ``{"resstream_assert", "versions", "machine", "seed", "config", "datetime",
        "duration_s", "models", "backends", "results", ...}``, JSON-ready."""
        results = self.results()
        pairs = model_pairs(results)
        versions = package_versions()
        end = time.time() if finished is None else finished
        return {
            "report_format": REPORT_FORMAT,
            "resstream_assert": versions.get("resstream_assert"),
            "versions": versions,
            "machine": machine_info(),
            "seed": self.seed,
            "config": self.config,
            "datetime": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(end - self.started, 3),
            "volatile_keys": list(VOLATILE_KEYS),
            "models": list(dict.fromkeys(m for m, _ in pairs)),
            "backends": sorted({str(r.get("backend", "")) for r in results}),
            "duplicates": [{"model": k[0], "backend": k[1], "claim": k[2], "nodeids": sorted(v)}
                           for k, v in sorted(self._duplicates.items())],
            "claims": _catalog(results),
            "results": results,
        }


def _catalog(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The registry's title, unit and boundary of each claim in ``results`` (renderers read titles and units here,
    so a stored report carries them); nothing to import for a run without results."""
    if not results:
        return {}
    from resstream_assert.claims import catalog

    return catalog({str(r.get("claim", "")) for r in results})


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a report (or baseline) as stable, strict JSON (no NaN); creates parent folders.

    Example:
        >>> write_report({"results": []}, "out/report.json")  # doctest: +SKIP
        PosixPath('out/report.json')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_text(report), encoding="utf-8")
    return path


def report_text(report: Mapping[str, Any]) -> str:
    """A report as stable, strict JSON text (no NaN), as :func:`write_report` writes it.

    Example:
        >>> report_text({"results": []})
        '{\\n  "results": []\\n}\\n'
    """
    # No sort_keys: key order is already deterministic, and figure series keep the order their
    # author chose (it sets the colours and the legend).
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report or baseline written by :func:`write_report`; ``ValueError`` if it is not one.

    Example:
        >>> read_report("baselines/resnet18.json")["results"][0]["claim"]  # doctest: +SKIP
        'C1'
    """
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError(f"{path} is not a resstream_assert report: its JSON is nested too deeply") from None
    check_report(data, str(path))
    return data


#: The deepest nesting a report has (figure series inside figures inside results): deeper is not a report.
MAX_DEPTH = 32


def _depth(obj: Any) -> int:
    """How deeply ``obj`` nests lists and dicts (iteratively: a hostile file must not overflow the stack)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack += [(v, d + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def check_report(data: Any, name: str = "the report") -> None:
    """``ValueError`` naming the first thing that makes ``data`` no report: not a dict with a ``results`` list,
    nested too deeply, a result that is not a dict with text ``model``/``backend``/``claim``, rows that are
    not dicts.

    Example:
        >>> check_report({"results": [{"model": "m", "backend": "torch", "claim": "C1", "rows": [3]}]}, "b.json")
        Traceback (most recent call last):
        ...
        ValueError: b.json is not a resstream_assert report: result 1 (m torch C1) has a row that is not an object
    """
    bad = f"{name} is not a resstream_assert report"
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{bad}: no top-level 'results' list")
    if _depth(data) > MAX_DEPTH:
        raise ValueError(f"{bad}: its JSON is nested deeper than {MAX_DEPTH} levels")
    for i, r in enumerate(data["results"], 1):
        if not isinstance(r, dict):
            raise ValueError(f"{bad}: result {i} is a {type(r).__name__}, not an object")
        ident = [r.get(k) for k in ("model", "backend", "claim")]
        if not all(isinstance(x, str) for x in ident):
            raise ValueError(f"{bad}: result {i} lacks a text model, backend and claim")
        who = " ".join(map(str, ident))  # all text (checked above)
        for key, kind in (("rows", list), ("values", dict), ("thresholds", dict), ("stability", dict)):
            if r.get(key) is not None and not isinstance(r[key], kind):
                raise ValueError(f"{bad}: result {i} ({who}) has {key!r} that is not a "
                                 f"{'list' if kind is list else 'object'}")
        if any(not isinstance(row, dict) for row in r.get("rows") or []):
            raise ValueError(f"{bad}: result {i} ({who}) has a row that is not an object")


def strip_volatile(report: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without the keys that differ between identical runs (timing).

    Example:
        >>> strip_volatile({"datetime": "x", "duration_s": 1.0, "seed": 0})
        {'seed': 0}
    """
    return {k: v for k, v in report.items() if k not in VOLATILE_KEYS}
