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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence


from resstream_assert.errors import BaselineDriftError
from resstream_assert.formatting import fnum, to_float
from resstream_assert.keys import claim_sort_key, model_label, result_key
from resstream_assert.gate.rules import FIELDS, GRAMMAR, Rule, parse_rule, parse_rules

__all__ = ["Rule", "parse_rule", "parse_rules", "DiffEntry", "BaselineDiff",
           "compare", "compare_result", "check", "baseline_from_report", "GRAMMAR",
           "quantities", "unknown_quantities", "find_baseline_result", "pair_models", "within_noise"]

_MISSING = object()


@dataclass(frozen=True)
class DiffEntry:
    """One compared quantity. ``block`` is ``""`` at claim level. ``status`` is ``ok``, ``FAIL``,
    ``warn`` (beyond tolerance in a report-only claim), ``unstable`` (a verdict that changed within
    the noise of the two intervals: shown, not failing), ``missing`` (in the baseline only) or
    ``new`` (in this run only); the last two become ``FAIL`` under the ``missing`` rule."""

    model: str
    backend: str
    claim: str
    block: str
    quantity: str
    baseline: Any
    now: Any
    change: str
    tolerance: str
    status: str
    note: str = ""

    def row(self) -> list[str]:
        """The entry as table cells."""
        return [model_label(self.model, self.backend), self.claim, self.block or "(claim)", self.quantity,
                _cell(self.baseline), _cell(self.now), self.change, self.tolerance,
                self.status + (f" ({self.note})" if self.note else "")]


TABLE_HEADER = ["model", "claim", "block", "quantity", "baseline", "now", "change", "tolerance", "status"]


def _cell(v: Any) -> str:
    return v if isinstance(v, str) else fnum(v)


_ABSENT = "-"  # shown where a claim, block or quantity does not exist on that side


def _absent(key: tuple[str, str, str], block: str, quantity: str, now_has: bool, base: Any, now: Any,
            strict: bool, tol: str = "") -> DiffEntry:
    """An entry for something present on one side only; FAIL only under the ``missing`` rule."""
    kind = "new" if now_has else "missing"
    return DiffEntry(*key, block, quantity, base, now, "", "missing" if strict else tol,
                     "FAIL" if strict else kind, kind if strict else "")


@dataclass(frozen=True)
class BaselineDiff:
    """The outcome of a comparison. ``failed`` is True when any entry has status ``FAIL``.

    There is deliberately no truth value (``bool(diff)`` raises): test ``diff.failed``.
    """

    entries: tuple[DiffEntry, ...]
    rules: tuple[Rule, ...]
    notes: tuple[str, ...] = ()
    baseline_path: str = ""

    @property
    def failed(self) -> bool:
        return any(e.status == "FAIL" for e in self.entries)

    def failures(self) -> list[DiffEntry]:
        """Entries that fail the gate."""
        return [e for e in self.entries if e.status == "FAIL"]

    def notable(self) -> list[DiffEntry]:
        """Entries worth showing: everything that is not ``ok``."""
        return [e for e in self.entries if e.status != "ok"]

    def counts(self) -> dict[str, int]:
        """How many entries have each status."""
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.status] = out.get(e.status, 0) + 1
        return out

    def table(self, all: bool = False) -> str:
        """A fixed-width table of the non-ok entries (every entry with ``all=True``).

        Example:
            >>> r = {"results": [{"model": "m", "backend": "torch", "claim": "C1", "verdict": "holds"}]}
            >>> print(compare(r, r, ["verdict"]).table())
            no differences beyond tolerance (1 quantities compared; rules: verdict)
        """
        rows = [e.row() for e in (self.entries if all else self.notable())]
        rules = ", ".join(str(r) for r in self.rules)
        if not rows:
            return f"no differences beyond tolerance ({len(self.entries)} quantities compared; rules: {rules})"
        lines = [TABLE_HEADER] + rows
        widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
        out = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        out.insert(1, "-" * max(len(s) for s in out))
        c = self.counts()
        out.append(f"{c.get('FAIL', 0)} FAIL, {c.get('unstable', 0)} unstable, {c.get('warn', 0)} warn, "
                   f"{c.get('missing', 0)} missing, "
                   f"{c.get('new', 0)} new, {c.get('ok', 0)} ok; rules: {rules}")
        return "\n".join(list(self.notes) + out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored under ``report["baseline"]``)."""
        return {"path": self.baseline_path, "rules": [str(r) for r in self.rules], "failed": self.failed,
                "counts": self.counts(), "notes": list(self.notes),
                "entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BaselineDiff:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(DiffEntry(**e) for e in d.get("entries", [])), parse_rules(d.get("rules", [])),
                   tuple(d.get("notes", [])), str(d.get("path", "")))

    def __bool__(self) -> bool:
        raise TypeError("BaselineDiff has no truth value: use `diff.failed`")


# --- comparison ------------------------------------------------------------------------------

def _quantity(d: Mapping[str, Any], name: str) -> Any:
    if name in FIELDS and name in d:
        return d[name]
    values = d.get("values") or {}
    return values[name] if name in values else _MISSING


def _compare_level(key: tuple[str, str, str], block: str, base: Mapping[str, Any], now: Mapping[str, Any],
                   rules: Sequence[Rule], fail_word: str, strict: bool) -> list[DiffEntry]:
    model, backend, claim = key
    out = []
    for rule in rules:
        if rule.mode == "missing":
            continue
        if rule.mode == "verdict":
            b, n = base.get("verdict"), now.get("verdict")
            noise = b != n and within_noise(base, now)
            status = "ok" if b == n else ("unstable" if noise else fail_word)
            out.append(DiffEntry(model, backend, claim, block, "verdict", b, n, "changed" if b != n else "",
                                 "beyond noise", status, "the two intervals overlap" if noise else ""))
            continue
        if rule.mode == "ci":
            out.append(_ci_entry(key, block, base, now, rule, fail_word))
            continue
        b, n = _quantity(base, rule.quantity), _quantity(now, rule.quantity)
        if b is _MISSING and n is _MISSING:
            continue  # this claim/block does not define the quantity: nothing to compare
        tol = f"{rule.mode}>{rule.limit:g}"
        if b is _MISSING or n is _MISSING:
            out.append(_absent(key, block, rule.quantity, n is not _MISSING, _ABSENT if b is _MISSING else b,
                               _ABSENT if n is _MISSING else n, strict, tol))
            continue
        bv, nv = to_float(b), to_float(n)
        if math.isnan(bv) and math.isnan(nv):
            out.append(DiffEntry(model, backend, claim, block, rule.quantity, b, n, "", tol, "ok"))
            continue
        if math.isnan(bv) or math.isnan(nv):
            out.append(DiffEntry(model, backend, claim, block, rule.quantity, b, n, "", tol, fail_word,
                                 "became undefined" if math.isnan(nv) else "became defined"))
            continue
        delta = nv - bv if not (math.isinf(nv) and nv == bv) else 0.0
        if rule.mode == "abs":
            size, change = abs(delta), f"{delta:+.4g}"
        else:
            size = 0.0 if delta == 0 else (abs(delta) / abs(bv) * 100 if bv != 0 else math.inf)
            change = f"{math.copysign(size, delta):+.3g}%"
        out.append(DiffEntry(model, backend, claim, block, rule.quantity, b, n, change, tol,
                             fail_word if size > rule.limit else "ok"))
    return out


def _interval(d: Mapping[str, Any]) -> tuple[float, float]:
    return to_float(d.get("ci_low")), to_float(d.get("ci_high"))


def within_noise(base: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether a verdict change between two results (claim level or one block row) is within noise:
    not holds <-> fails (intervals on opposite sides of the boundary), and the two effects' 95%
    intervals are not disjoint (a side without an interval, an untestable block, shows no change).

    Example:
        >>> within_noise({"verdict": "holds", "ci_low": 0.06, "ci_high": 0.2},
        ...              {"verdict": "inconclusive", "ci_low": 0.03, "ci_high": 0.15})
        True
        >>> within_noise({"verdict": "holds", "ci_low": 0.3, "ci_high": 0.5},
        ...              {"verdict": "inconclusive", "ci_low": 0.01, "ci_high": 0.2})
        False
    """
    if {str(base.get("verdict")), str(now.get("verdict"))} == {"holds", "fails"}:
        return False
    (bl, bh), (nl, nh) = _interval(base), _interval(now)
    if not all(math.isfinite(v) for v in (bl, bh, nl, nh)):
        return True
    return bl <= nh and nl <= bh


def _ci_entry(key: tuple[str, str, str], block: str, base: Mapping[str, Any], now: Mapping[str, Any],
              rule: Rule, fail_word: str) -> DiffEntry:
    """``effect:ci>K``: the effect moved by more than K combined half-widths of the two intervals."""
    model, backend, claim = key
    b, n = to_float(base.get("effect")), to_float(now.get("effect"))
    (bl, bh), (nl, nh) = _interval(base), _interval(now)
    half = math.hypot((bh - bl) / 2, (nh - nl) / 2)
    tol = f"ci>{rule.limit:g}"
    if not all(math.isfinite(v) for v in (b, n, half)) or half == 0:
        defined = math.isfinite(b) == math.isfinite(n)
        return DiffEntry(model, backend, claim, block, "effect", base.get("effect"), now.get("effect"), "", tol,
                         "ok" if defined else fail_word, "" if defined else "defined on one side only")
    size = abs(n - b) / half
    return DiffEntry(model, backend, claim, block, "effect", b, n, f"{size:.2f} half-widths", tol,
                     fail_word if size > rule.limit else "ok")


def _compare_claim(key: tuple[str, str, str], base: Mapping[str, Any], now: Mapping[str, Any],
                   rules: Sequence[Rule]) -> list[DiffEntry]:
    gate = bool(now.get("gate", True)) and bool(base.get("gate", True))
    fail_word = "FAIL" if gate else "warn"
    strict = any(r.mode == "missing" for r in rules) and gate
    out = _compare_level(key, "", base, now, rules, fail_word, strict)
    base_rows = {r["block"]: r for r in base.get("rows", [])}
    now_rows = {r["block"]: r for r in now.get("rows", [])}
    for block in list(base_rows) + [b for b in now_rows if b not in base_rows]:
        if block in base_rows and block in now_rows:
            out += _compare_level(key, block, base_rows[block], now_rows[block], rules, fail_word, strict)
        else:
            has = block in now_rows
            out.append(_absent(key, block, "block", has, _ABSENT if has else "present",
                               "present" if has else _ABSENT, strict))
    return out


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
            entries += _compare_claim(key, base_idx[bkey], now_idx[key], rules_t)
        else:
            strict = strict_missing and bool(now_idx[key].get("gate", True))
            entries.append(_absent(key, "", "claim", True, _ABSENT, "present", strict))
    for bkey in sorted(set(base_idx) - matched, key=lambda k: (k[0], k[1], claim_sort_key(k[2]))):
        strict = strict_missing and bool(base_idx[bkey].get("gate", True))
        entries.append(_absent(bkey, "", "claim", False, "present", _ABSENT, strict))
    if base_idx or now_idx:  # a rule whose quantity exists nowhere would compare nothing and pass: it fails
        for name in unknown_quantities(rules_t, baseline, current):
            rule = next(r for r in rules_t if r.quantity == name)
            entries.append(DiffEntry("*", "*", "*", "", name, _ABSENT, _ABSENT, "", f"{rule.mode}>{rule.limit:g}",
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
        entry = _absent((model, backend, claim), "", "claim", True, _ABSENT, "present", strict)
        return BaselineDiff((entry,), rules_t, (), baseline_path)
    notes = [n for n in notes if model_label(model, backend) in n]
    return BaselineDiff(tuple(_compare_claim((model, backend, claim), base_idx[bkey], d, rules_t)), rules_t,
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
