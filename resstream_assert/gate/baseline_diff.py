"""The outcome of a baseline comparison: one :class:`DiffEntry` per compared quantity, gathered in a
:class:`BaselineDiff` that renders its table and its JSON form (``report["baseline"]``).

How entries are made is :mod:`.claim_diff` (one claim) and :mod:`.baseline` (a whole run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from resstream_assert.formatting import fnum
from resstream_assert.gate.rules import Rule, parse_rules
from resstream_assert.keys import model_label
from resstream_assert.kinds import GateStatus


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
    status: GateStatus
    note: str = ""

    def row(self) -> list[str]:
        """The entry as table cells."""
        return [model_label(self.model, self.backend), self.claim, self.block or "(claim)", self.quantity,
                _cell(self.baseline), _cell(self.now), self.change, self.tolerance,
                self.status + (f" ({self.note})" if self.note else "")]


TABLE_HEADER = ["model", "claim", "block", "quantity", "baseline", "now", "change", "tolerance", "status"]


def _cell(v: Any) -> str:
    return v if isinstance(v, str) else fnum(v)


ABSENT = "-"  # shown where a claim, block or quantity does not exist on that side


def absent_entry(key: tuple[str, str, str], block: str, quantity: str, now_has: bool, base: Any, now: Any,
                 strict: bool, tol: str = "") -> DiffEntry:
    """An entry for something present on one side only; FAIL only under the ``missing`` rule.

    Example:
        >>> absent_entry(("m", "torch", "C1"), "", "claim", True, ABSENT, "present", strict=False).status
        'new'
    """
    kind: GateStatus = "new" if now_has else "missing"
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
            >>> from resstream_assert.gate.baseline import compare
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
