"""Baseline tolerances: the ``--resstream-compare-fail`` expressions, parsed strictly.

    verdict              a verdict change beyond noise fails (claim level and per block): the
                         intervals of the two effects do not overlap, or holds <-> fails;
                         a change whose intervals overlap is reported as unstable
    missing              a claim or block present on one side only fails
    decided              a gated claim decided in the baseline (holds or fails) that is undecided now
                         fails, even within noise: a release must still show what its baseline showed
    NAME:abs>LIMIT       |now - baseline| > LIMIT fails            e.g. rho:abs>0.1
    NAME:pct>LIMIT       |now - baseline| / |baseline| > LIMIT %   e.g. frac_skip:pct>20
    effect:ci>LIMIT      |now - baseline| > LIMIT combined interval half-widths
                         (sqrt(h_base^2 + h_now^2)), e.g. effect:ci>2
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

from resstream_assert.errors import CompareFailError

__all__ = ["GRAMMAR", "FIELDS", "CompareFailError", "Rule", "parse_rule", "parse_rules", "gate_rules"]

GRAMMAR = ("verdict | missing | decided | NAME:abs>LIMIT | NAME:pct>LIMIT | effect:ci>LIMIT  (NAME: a claim field such "
           "as effect, p_adjusted, or a values key such as rho, frac_skip; LIMIT: a non-negative number; ci: in "
           "units of the two effects' interval half-widths)")

_RULE_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*):(?P<mode>abs|pct|ci)>(?P<limit>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")
#: The rules that are one word.
_WORDS = ("verdict", "missing", "decided")
#: The numeric claim fields a rule can compare (besides the ``values`` keys).
FIELDS = ("statistic", "p_value", "p_adjusted", "effect", "ci_low", "ci_high", "n")


@dataclass(frozen=True)
class Rule:
    """One tolerance. ``mode`` is ``verdict``, ``missing``, ``decided``, ``abs``, ``pct`` or ``ci``."""

    mode: str
    quantity: str = ""
    limit: float = 0.0

    def __str__(self) -> str:
        return self.mode if self.mode in _WORDS else f"{self.quantity}:{self.mode}>{self.limit:g}"


def parse_rule(expr: str) -> Rule:
    """Parse one compare-fail expression strictly.

    Example:
        >>> parse_rule("rho:abs>0.1")
        Rule(mode='abs', quantity='rho', limit=0.1)
        >>> parse_rule("rho>0.1")
        Traceback (most recent call last):
        ...
        resstream_assert.errors.CompareFailError: invalid --resstream-compare-fail expression 'rho>0.1': expected verdict | missing | decided | NAME:abs>LIMIT | NAME:pct>LIMIT | effect:ci>LIMIT  (NAME: a claim field such as effect, p_adjusted, or a values key such as rho, frac_skip; LIMIT: a non-negative number; ci: in units of the two effects' interval half-widths)
    """
    text = str(expr).strip()
    if text in _WORDS:
        return Rule(text)
    m = _RULE_RE.match(text)
    if not m:
        raise CompareFailError(f"invalid --resstream-compare-fail expression {expr!r}: expected {GRAMMAR}")
    limit = float(m["limit"])
    if not math.isfinite(limit):
        raise CompareFailError(f"invalid --resstream-compare-fail expression {expr!r}: LIMIT must be finite")
    if m["mode"] == "ci" and m["name"] != "effect":
        raise CompareFailError(f"invalid --resstream-compare-fail expression {expr!r}: only the effect has an "
                               f"interval; use effect:ci>{m['limit']} or {m['name']}:abs>LIMIT")
    return Rule(m["mode"], m["name"], limit)


def parse_rules(exprs: Iterable[str | Rule]) -> tuple[Rule, ...]:
    """Parse several expressions (``Rule`` objects pass through); duplicates are dropped.

    Example:
        >>> [str(r) for r in parse_rules(["verdict", "rho:abs>0.1", "verdict"])]
        ['verdict', 'rho:abs>0.1']
    """
    out = [r if isinstance(r, Rule) else parse_rule(r) for r in exprs]
    return tuple(dict.fromkeys(out))


def gate_rules(tolerances: Iterable[str | Rule] = ()) -> tuple[Rule, ...]:
    """The rules of a baseline gate: the verdicts, always, then the given tolerances.

    A claim whose verdict changed never passes a baseline gate, whatever tolerances were given
    (the pytest plugin and ``resstream report merge`` both gate with these).

    Example:
        >>> [str(r) for r in gate_rules(["rho:abs>0.1"])]
        ['verdict', 'rho:abs>0.1']
    """
    return parse_rules(("verdict", *tolerances))
