"""Immutable result types: one statistical test, one block's row, one claim.

Modelled on scipy's result objects: fields are attributes, the interval comes from
``confidence_interval()``, and nothing is truthy by accident. ``bool(result)`` raises
``TypeError`` (as ``pytest.approx`` does) because "did it pass?" has four answers here;
compare ``result.verdict`` instead.

Mappings passed in (``values``, ``thresholds``, ``figures``) are copied into read-only,
hashable containers, and lists/arrays inside ``figures`` become tuples, so a result can be
neither mutated after the fact nor drift from what was reported.

JSON encoding (``to_dict``): NaN becomes ``None`` and ±inf becomes the strings ``"inf"``/
``"-inf"``; ``from_dict`` reverses both for the float fields. Because ``nan != nan``, compare
results that may hold NaN through ``to_dict()``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from resstream_assert.formatting import feffect, fnum, fp

__all__ = ["Verdict", "ConfidenceInterval", "TestResult", "BlockRow", "ClaimResult"]


class Verdict(str, enum.Enum):
    """Outcome of a claim or a block. A ``str`` so it serialises as its value."""

    HOLDS = "holds"
    FAILS = "fails"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not_applicable"

    def __str__(self) -> str:
        return self.value


def _no_bool(self: object) -> bool:
    raise TypeError(
        f"{type(self).__name__} has no truth value: a claim can hold, fail, be inconclusive "
        "or not applicable. Compare `result.verdict == Verdict.HOLDS` (or p_value/effect "
        "explicitly) instead of `if result:` / `assert result`."
    )


class _FrozenDict(dict):
    """A read-only, hashable dict (equal to a plain dict with the same items)."""

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("result mappings are read-only; use result.with_(...) to change them")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # The default dict pickling re-inserts items with __setitem__, which is blocked.
        return (type(self), (dict(self),))


def _freeze(obj: Any) -> Any:
    """Recursively turn arrays/lists into tuples and mappings into _FrozenDicts."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return _FrozenDict({str(k): _freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    return obj


def _enc(x: Any) -> Any:
    """JSON-ready copy: NaN -> None, ±inf -> "inf"/"-inf", tuples -> lists."""
    if isinstance(x, Mapping):
        return {k: _enc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_enc(v) for v in x]
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    if isinstance(x, enum.Enum):
        return x.value
    return x


def _dec_float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _dec_figure(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _dec_figure(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec_figure(v) for v in x]
    if x in ("inf", "-inf"):
        return float(x)
    return x  # None stays None: a figure may legitimately hold None


def _float_map(m: Mapping[str, Any]) -> _FrozenDict:
    return _FrozenDict({str(k): float(v) for k, v in m.items()})


def _coerce(obj: Any, floats: tuple[str, ...], ints: tuple[str, ...]) -> None:
    """Normalise numpy scalars to Python numbers so equality, hashing and JSON agree."""
    for name in floats:
        object.__setattr__(obj, name, float(getattr(obj, name)))
    for name in ints:
        v = getattr(obj, name)
        if v is not None:
            object.__setattr__(obj, name, int(v))
    for name in ("p_value", "p_adjusted"):
        p = getattr(obj, name, math.nan)
        if 1.0 < p <= 1.0 + 1e-9:  # scipy can return 1 + a few ulps; not a user error
            object.__setattr__(obj, name, 1.0)
        elif not (math.isnan(p) or 0.0 <= p <= 1.0):
            raise ValueError(f"{type(obj).__name__}.{name} must be in [0, 1] or NaN, got {p}")


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided interval; unpacks like scipy's ``(low, high)`` namedtuple."""

    low: float
    high: float
    level: float = 0.95

    def __iter__(self) -> Iterator[float]:
        return iter((self.low, self.high))

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    __bool__ = _no_bool


_TEST_FLOATS = ("statistic", "p_value", "effect", "ci_low", "ci_high")


@dataclass(frozen=True)
class TestResult:
    """One statistical test. ``effect`` is the effect size named ``effect_name``; the CI is a
    two-sided 95% interval of the effect. ``n`` counts the observations the test used;
    ``n_dropped`` the NaN observations removed first. ``values`` holds extra named numbers
    (e.g. ``expected_overlap``, ``n_zero``)."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float
    effect: float
    ci_low: float
    ci_high: float
    n: int
    method: str
    alternative: str
    effect_name: str
    n_resamples: int | None = None
    n_dropped: int = 0
    values: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _coerce(self, _TEST_FLOATS, ("n", "n_resamples", "n_dropped"))
        object.__setattr__(self, "values", _float_map(self.values))

    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.ci_low, self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        return _enc(dataclasses.asdict(self))

    __bool__ = _no_bool


_ROW_FLOATS = ("statistic", "p_value", "p_adjusted", "effect", "ci_low", "ci_high")


@dataclass(frozen=True)
class BlockRow:
    """One block's line in a claim's table; ``values`` holds extra named quantities
    (e.g. ``frac_skip``, ``rho``) used by reports and baselines."""

    block: str
    verdict: Verdict
    statistic: float
    p_value: float
    p_adjusted: float
    effect: float
    ci_low: float
    ci_high: float
    n: int
    note: str = ""
    values: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        _coerce(self, _ROW_FLOATS, ("n",))
        object.__setattr__(self, "values", _float_map(self.values))

    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.ci_low, self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        return _enc(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlockRow:
        kw = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        for name in _ROW_FLOATS:
            if name in kw:
                kw[name] = _dec_float(kw[name])
        kw["values"] = {k: _dec_float(v) for k, v in d.get("values", {}).items()}
        return cls(**kw)

    __bool__ = _no_bool


_CLAIM_FLOATS = ("statistic", "p_value", "p_adjusted", "effect", "ci_low", "ci_high")


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of one claim on one model: a claim-level summary plus per-block rows.

    ``gate=False`` marks report-only claims (e.g. C4) whose verdict must not fail a run.
    ``reason`` says why a claim is inconclusive / not applicable, or summarises it in a line.
    ``figures`` holds JSON-ready plot data (lists of floats, stored as tuples).
    ``stimuli`` is the stimulus source the measures used (``exemplars`` or ``featviz``); like the
    backend it is part of a result's identity in reports (``to_dict`` leaves the default out).
    ``stability`` is empty unless the run asked for it (``--resstream-stability N``): how often the
    verdict flipped when the claim was re-evaluated on N probe subsamples with other seeds
    (``flips``, ``runs``, ``rate`` with its Clopper-Pearson ``ci_low``/``ci_high``, ``n_images``
    of ``of_images``, ``unstable`` = 1.0 when ``rate`` exceeds ``threshold``; see
    :mod:`resstream_assert.claims.verdict_stability`).
    """

    claim: str
    title: str
    source: str
    verdict: Verdict
    statistic: float
    p_value: float
    p_adjusted: float
    effect: float
    ci_low: float
    ci_high: float
    n: int
    rows: tuple[BlockRow, ...]
    seed: int
    model: str = ""
    backend: str = "torch"
    method: str = ""
    reason: str = ""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    values: Mapping[str, float] = field(default_factory=dict)
    gate: bool = True
    figures: Mapping[str, Any] = field(default_factory=dict)
    stimuli: str = "exemplars"
    stability: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        object.__setattr__(self, "stimuli", str(self.stimuli))
        _coerce(self, _CLAIM_FLOATS, ("n", "seed"))
        rows = tuple(r if isinstance(r, BlockRow) else BlockRow.from_dict(r) for r in self.rows)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "gate", bool(self.gate))
        object.__setattr__(self, "thresholds", _float_map(self.thresholds))
        object.__setattr__(self, "values", _float_map(self.values))
        object.__setattr__(self, "figures", _freeze(dict(self.figures)))
        object.__setattr__(self, "stability", _float_map(self.stability))

    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.ci_low, self.ci_high)

    def __repr__(self) -> str:
        """One line (pytest prints it in tracebacks and assertion messages; the rows are in :meth:`table`).

        Example:
            >>> ClaimResult("C3", "t", "P1", "fails", 0.1, 0.2, 0.84, -0.26, -0.45, 0.02, 224, (), 0, model="m")
            <ClaimResult C3 on m[torch]: fails, effect -0.260 [-0.450, +0.020], p_adj 0.8400, n 224, 0 blocks>
        """
        where = f"{self.model or '?'}[{self.backend}" + ("" if self.stimuli == "exemplars" else f"+{self.stimuli}")
        return (f"<ClaimResult {self.claim} on {where}]: {self.verdict.value}, effect "
                f"{feffect(self.effect, self.ci_low, self.ci_high)}, p_adj {fp(self.p_adjusted)}, n {self.n}, "
                f"{len(self.rows)} blocks>")

    def with_(self, **changes: Any) -> ClaimResult:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``json.dumps(..., allow_nan=False)`` works on it)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["rows"] = [r.to_dict() for r in self.rows]
        if self.stimuli == "exemplars":  # the default: reports of exemplar runs keep their exact form
            del d["stimuli"]
        if not self.stability:  # likewise for runs without --resstream-stability
            del d["stability"]
        return _enc(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClaimResult:
        """Inverse of :meth:`to_dict`; unknown keys (e.g. a report's ``nodeid``) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in d and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"ClaimResult.from_dict: missing keys {missing}")
        kw = {k: v for k, v in d.items() if k in names}
        for name in _CLAIM_FLOATS:
            kw[name] = _dec_float(kw[name])
        kw["rows"] = tuple(BlockRow.from_dict(r) for r in d["rows"])
        for name in ("thresholds", "values", "stability"):
            kw[name] = {k: _dec_float(v) for k, v in d.get(name, {}).items()}
        kw["figures"] = _dec_figure(d.get("figures", {}))
        return cls(**kw)

    def table(self, mark: Callable[[BlockRow], bool] | None = None) -> str:
        """Fixed-width per-block table; rows where ``mark(row)`` is true start with ``>``."""
        if not self.rows:
            return "(no per-block rows)"
        head = ("", "block", "verdict", "statistic", "effect [95% CI]", "p", "p_adj", "n", "note")
        lines = [head]
        for r in self.rows:
            lines.append((">" if mark is not None and mark(r) else "", r.block, r.verdict.value,
                          fnum(r.statistic), feffect(r.effect, r.ci_low, r.ci_high),
                          fp(r.p_value), fp(r.p_adjusted), str(r.n), r.note))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        right = {3, 5, 6, 7}  # numbers align right
        out = []
        for line in lines:
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
            out.append("  ".join(cells).rstrip())
        out.insert(1, "-" * max(len(line) for line in out))
        return "\n".join(out)

    __bool__ = _no_bool

