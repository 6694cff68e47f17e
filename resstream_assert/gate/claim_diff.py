"""Compare one claim result with its baseline counterpart, quantity by quantity (the rules of :mod:`.rules`).

The claim level and every block row are compared under each rule; a block on one side only is
``new`` or ``missing``. A verdict that changed within the two intervals' overlap is ``unstable``
(:func:`within_noise`), and drifts of a report-only claim (``gate: false``) are ``warn``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from resstream_assert.formatting import to_float
from resstream_assert.gate.baseline_diff import ABSENT, DiffEntry, absent_entry
from resstream_assert.gate.rules import FIELDS, Rule
from resstream_assert.kinds import GateStatus

_MISSING = object()


def _quantity(d: Mapping[str, Any], name: str) -> Any:
    if name in FIELDS and name in d:
        return d[name]
    values = d.get("values") or {}
    return values[name] if name in values else _MISSING


def _decided_entry(key: tuple[str, str, str], base: Mapping[str, Any], now: Mapping[str, Any],
                   fail_word: GateStatus) -> list[DiffEntry]:
    """The ``decided`` rule: a claim that held or failed in the baseline and is undecided now, whether or not its
    interval moved beyond noise (the ``verdict`` rule calls such a change unstable)."""
    b, n = base.get("verdict"), now.get("verdict")
    if b not in ("holds", "fails") or n != "inconclusive":
        return []
    return [DiffEntry(*key, "", "decided", b, n, "undecided now", "decided", fail_word,
                      "the baseline decided it; this run cannot")]


def _compare_level(key: tuple[str, str, str], block: str, base: Mapping[str, Any], now: Mapping[str, Any],
                   rules: Sequence[Rule], fail_word: GateStatus, strict: bool) -> list[DiffEntry]:
    model, backend, claim = key
    out = []
    for rule in rules:
        if rule.mode == "missing":
            continue
        if rule.mode == "decided":
            if not block:  # the claim's verdict: what the gate reads
                out += _decided_entry(key, base, now, fail_word)
            continue
        if rule.mode == "verdict":
            b, n = base.get("verdict"), now.get("verdict")
            noise = b != n and within_noise(base, now)
            status: GateStatus = "ok" if b == n else ("unstable" if noise else fail_word)
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
            out.append(absent_entry(key, block, rule.quantity, n is not _MISSING, ABSENT if b is _MISSING else b,
                                    ABSENT if n is _MISSING else n, strict, tol))
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
              rule: Rule, fail_word: GateStatus) -> DiffEntry:
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


def compare_claim(key: tuple[str, str, str], base: Mapping[str, Any], now: Mapping[str, Any],
                  rules: Sequence[Rule]) -> list[DiffEntry]:
    """Every entry of one claim's comparison: the claim level, then each block row (the baseline's order first).

    Example:
        >>> from resstream_assert.gate.rules import parse_rules
        >>> base = {"verdict": "holds", "effect": 0.3, "rows": [{"block": "layer2.0", "verdict": "holds"}]}
        >>> now = {"verdict": "holds", "effect": 0.1, "rows": []}
        >>> [(e.block, e.quantity, e.status) for e in compare_claim(("m", "torch", "C3"), base, now,
        ...                                                          parse_rules(["verdict", "effect:abs>0.1"]))]
        [('', 'verdict', 'ok'), ('', 'effect', 'FAIL'), ('layer2.0', 'block', 'missing')]
    """
    gate = bool(now.get("gate", True)) and bool(base.get("gate", True))
    fail_word: GateStatus = "FAIL" if gate else "warn"
    strict = any(r.mode == "missing" for r in rules) and gate
    out = _compare_level(key, "", base, now, rules, fail_word, strict)
    base_rows = {r["block"]: r for r in base.get("rows", [])}
    now_rows = {r["block"]: r for r in now.get("rows", [])}
    for block in list(base_rows) + [b for b in now_rows if b not in base_rows]:
        if block in base_rows and block in now_rows:
            out += _compare_level(key, block, base_rows[block], now_rows[block], rules, fail_word, strict)
        else:
            has = block in now_rows
            out.append(absent_entry(key, block, "block", has, ABSENT if has else "present",
                                    "present" if has else ABSENT, strict))
    return out
