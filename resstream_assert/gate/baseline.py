"""Compare a run with a stored baseline report: the release gate.

Rules are pytest-benchmark-style ``--resstream-compare-fail`` expressions (their grammar is
:mod:`.rules`): ``verdict`` (a verdict change beyond noise fails; one within the two intervals'
overlap is ``unstable``), ``missing``, ``NAME:abs>LIMIT``, ``NAME:pct>LIMIT`` and
``effect:ci>LIMIT`` (a move in units of the intervals' half-widths).

``NAME`` is a claim's numeric top-level field (``effect``, ``p_adjusted``, ``statistic``, ``n``,
...) or a key of its ``values``; it is checked at claim level and in every block row that has
it. A quantity defined on one side and undefined (NaN) on the other is a drift. Drifts in a
report-only claim (``gate: false``) are shown as ``warn`` and never fail.

Matching is by (model, backend, claim) and block name. When a backend has exactly one model
on each side and their names differ (``resnet18@v1.pth`` vs ``@v2.pth``), the two are paired
and a note says so: that is the release-gate case.

This module matches a run's results with the baseline's; one claim's comparison is
:mod:`.claim_diff`, the entries and their table :mod:`.baseline_diff` (names re-exported here).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from resstream_assert.errors import BaselineDriftError
from resstream_assert.gate.baseline_diff import ABSENT, TABLE_HEADER, BaselineDiff, DiffEntry, absent_entry
from resstream_assert.gate.claim_diff import compare_claim, within_noise
from resstream_assert.gate.rules import FIELDS, GRAMMAR, Rule, parse_rule, parse_rules
from resstream_assert.keys import claim_sort_key, model_label, result_key

__all__ = ["Rule", "parse_rule", "parse_rules", "DiffEntry", "BaselineDiff", "TABLE_HEADER",
           "compare", "compare_result", "check", "baseline_from_report", "GRAMMAR",
           "quantities", "unknown_quantities", "find_baseline_result", "pair_models", "within_noise"]


def _pairing(base_keys: Iterable[tuple[str, str, str]], now_pairs: Iterable[tuple[str, str]]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Map each current (model, backend) to the baseline model it is compared with."""
    base_models: dict[str, set[str]] = {}
    for m, b, _ in base_keys:
        base_models.setdefault(b, set()).add(m)
    now_models: dict[str, set[str]] = {}
    for m, b in now_pairs:
        now_models.setdefault(b, set()).add(m)
    mapping, notes = {}, []
    for backend, models in now_models.items():
        bm = base_models.get(backend, set())
        for m in models & bm:
            mapping[(m, backend)] = m
        left_now, left_base = models - bm, bm - models
        if len(left_now) == 1 and len(left_base) == 1:
            (m,), (b,) = left_now, left_base
            mapping[(m, backend)] = b
            notes.append(f"note: model {model_label(m, backend)} compared with baseline model {model_label(b, backend)}")
    return mapping, notes


def _index(results: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {result_key(r): r for r in results}


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any], rules: Iterable[str | Rule] = ("verdict",),
            *, baseline_path: str = "", notes: Sequence[str] = ()) -> BaselineDiff:
    """Compare two reports (their JSON dicts) under ``rules``; claims on one side only are reported.

    A comparison that matched no (model, backend, claim) of the run with the baseline compared nothing:
    it fails (a gate that checked nothing must not pass). ``notes`` are stated above the table.

    Example:
        >>> base = {"results": [{"model": "m", "backend": "torch", "claim": "C3", "verdict": "holds",
        ...                      "effect": -0.3, "rows": []}]}
        >>> now = {"results": [dict(base["results"][0], effect=-0.1)]}
        >>> diff = compare(base, now, ["effect:abs>0.1"])
        >>> diff.failed, diff.failures()[0].change
        (True, '+0.2')
    """
    rules_t = parse_rules(rules)
    base_idx, now_idx = _index(baseline.get("results", [])), _index(current.get("results", []))
    mapping, pair_notes = _pairing(base_idx, [(m, b) for m, b, _ in now_idx])
    strict_missing = any(r.mode == "missing" for r in rules_t)
    entries: list[DiffEntry] = []
    matched: set[tuple[str, str, str]] = set()
    for key in sorted(now_idx, key=lambda k: (k[0], k[1], claim_sort_key(k[2]))):
        model, backend, claim = key
        bkey = (mapping.get((model, backend), model), backend, claim)
        if bkey in base_idx:
            matched.add(bkey)
            entries += compare_claim(key, base_idx[bkey], now_idx[key], rules_t)
        else:
            strict = strict_missing and bool(now_idx[key].get("gate", True))
            entries.append(absent_entry(key, "", "claim", True, ABSENT, "present", strict))
    for bkey in sorted(set(base_idx) - matched, key=lambda k: (k[0], k[1], claim_sort_key(k[2]))):
        strict = strict_missing and bool(base_idx[bkey].get("gate", True))
        entries.append(absent_entry(bkey, "", "claim", False, "present", ABSENT, strict))
    if base_idx or now_idx:  # a rule whose quantity exists nowhere would compare nothing and pass: it fails
        for name in unknown_quantities(rules_t, baseline, current):
            rule = next(r for r in rules_t if r.quantity == name)
            entries.append(DiffEntry("*", "*", "*", "", name, ABSENT, ABSENT, "", f"{rule.mode}>{rule.limit:g}",
                                     "FAIL", "no claim or block has this quantity: check the name"))
    if not matched:
        what = "this run recorded no claim result" if not now_idx else "no claim result of this run is in the baseline"
        entries.append(DiffEntry("*", "*", "*", "", "claims", len(base_idx), len(now_idx), "", "something compared",
                                 "FAIL", f"nothing was compared: {what}"))
    return BaselineDiff(tuple(entries), rules_t, tuple(notes) + tuple(pair_notes), baseline_path)


def pair_models(baseline: Mapping[str, Any], now_pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Each current (model, backend label) -> the baseline model it is compared with (as :func:`compare` pairs).

    Example:
        >>> base = {"results": [{"model": "r18@v1.pth", "backend": "torch", "claim": "C1"}]}
        >>> pair_models(base, [("r18@v2.pth", "torch")])
        {('r18@v2.pth', 'torch'): 'r18@v1.pth'}
    """
    return _pairing(_index(baseline.get("results", [])), now_pairs)[0]


def quantities(report: Mapping[str, Any]) -> set[str]:
    """Every quantity name a rule can compare in ``report``: the claim fields and every ``values`` key
    of its claims and block rows.

    Example:
        >>> sorted(quantities({"results": [{"claim": "C3", "values": {"rho": -0.3}, "rows": []}]}))[:3]
        ['ci_high', 'ci_low', 'effect']
    """
    out = set(FIELDS)
    for r in report.get("results", []):
        out.update((r.get("values") or {}).keys())
        for row in r.get("rows", []) or []:
            out.update((row.get("values") or {}).keys())
    return out


def unknown_quantities(rules: Iterable[str | Rule], *reports: Mapping[str, Any]) -> list[str]:
    """The quantities named by ``rules`` that no claim or block of ``reports`` has (a typo would compare nothing).

    Example:
        >>> unknown_quantities(["verdict", "rhoo:abs>0.1"], {"results": [{"values": {"rho": 0.1}}]})
        ['rhoo']
    """
    known: set[str] = set()
    for rep in reports:
        known |= quantities(rep)
    return sorted({r.quantity for r in parse_rules(rules) if r.mode in ("abs", "pct") and r.quantity not in known})


def find_baseline_result(result: Any, baseline: Mapping[str, Any], *,
                         run_models: Sequence[str] | None = None) -> Mapping[str, Any] | None:
    """The baseline's result for the same model (paired as :func:`compare` pairs them), backend and claim.

    Example:
        >>> base = {"results": [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "fails"}]}
        >>> find_baseline_result({"model": "m2", "backend": "torch", "claim": "C1"}, base)["verdict"]
        'fails'
    """
    d = result if isinstance(result, Mapping) else result.to_dict()
    model, backend, claim = result_key(d)
    base_idx = _index(baseline.get("results", []))
    mapping, _ = _pairing(base_idx, [(m, backend) for m in sorted(set(run_models or ()) | {model})])
    return base_idx.get((mapping.get((model, backend), model), backend, claim))


def compare_result(result: Any, baseline: Mapping[str, Any], rules: Iterable[str | Rule] = ("verdict",), *,
                   run_models: Sequence[str] | None = None, baseline_path: str = "") -> BaselineDiff:
    """Compare ONE claim result with its counterpart in ``baseline`` (what the per-test gate does).

    ``run_models`` are the models of the whole run: a result whose model is not in the
    baseline is paired with the baseline's only model only when the run has one model too,
    exactly as :func:`compare` pairs them. A claim absent from the baseline is ``new``.

    Example:
        >>> base = {"results": [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"}]}
        >>> compare_result(dict(base["results"][0], verdict="fails"), base).failed
        True
    """
    d = result if isinstance(result, Mapping) else result.to_dict()
    model, backend, claim = result_key(d)
    rules_t = parse_rules(rules)
    base_idx = _index(baseline.get("results", []))
    models = sorted(set(run_models or ()) | {model})
    mapping, notes = _pairing(base_idx, [(m, backend) for m in models])
    bkey = (mapping.get((model, backend), model), backend, claim)
    if bkey not in base_idx:
        strict = any(r.mode == "missing" for r in rules_t) and bool(d.get("gate", True))
        entry = absent_entry((model, backend, claim), "", "claim", True, ABSENT, "present", strict)
        return BaselineDiff((entry,), rules_t, (), baseline_path)
    notes = [n for n in notes if model_label(model, backend) in n]
    return BaselineDiff(tuple(compare_claim((model, backend, claim), base_idx[bkey], d, rules_t)), rules_t,
                        tuple(notes), baseline_path)


def check(result: Any, baseline: Mapping[str, Any], rules: Iterable[str | Rule] = ("verdict",), **kw: Any) -> BaselineDiff:
    """:func:`compare_result`, raising :class:`BaselineDriftError` (an AssertionError) on failure.

    Example:
        >>> base = {"results": [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"}]}
        >>> check(base["results"][0], base).failed
        False
    """
    __tracebackhide__ = True
    diff = compare_result(result, baseline, rules, **kw)
    if diff.failed:
        raise BaselineDriftError(diff)
    return diff


def baseline_from_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline form of a report: the same JSON without figures and without a previous diff
    (plot data is bulky in a repository and never compared).

    Example:
        >>> baseline_from_report({"results": [{"claim": "C1", "figures": {"h": {}}}]})["results"]
        [{'claim': 'C1'}]
    """
    out = {k: v for k, v in report.items() if k != "baseline"}
    out["results"] = [{k: v for k, v in r.items() if k != "figures"} for r in report.get("results", [])]
    return out
