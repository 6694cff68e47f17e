"""The thresholds and resampling sizes a claim is evaluated with (:class:`ClaimOptions`), and the
per-claim minimum effects a user names (``--resstream-min-effect C3=0.2``: :func:`parse_min_effects`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import numpy as np


def parse_min_effects(v: Any) -> tuple[tuple[str, float], ...]:
    """``["C3=0.2", "C1=0.1"]`` (or a mapping, or pairs) -> ``(("C1", 0.1), ("C3", 0.2))``; ValueError when malformed.

    Example:
        >>> parse_min_effects(["C3=0.2", "C1=0.1"])
        (('C1', 0.1), ('C3', 0.2))
    """
    if v is None:
        return ()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        raise ValueError(f"{v!r} is not CLAIM=VALUE: each claim has its own units, so name it (e.g. C3=0.2)")
    items = v.items() if isinstance(v, Mapping) else v
    out = {}
    for item in items:
        if isinstance(item, str):
            claim, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not CLAIM=VALUE: each claim has its own units, so name it (e.g. C3=0.2 "
                                 "for |rho| >= 0.2, C1=0.1 for a 10% rarest category)")
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{item!r}: {text!r} is not a number") from None
        else:
            claim, value = item
        claim = str(claim).strip().upper()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{claim}={value!r}: a minimum effect is a finite number >= 0 in the claim's units")
        out[claim] = float(value)
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class ClaimOptions:
    """Thresholds and resampling sizes shared by all claims (per-claim defaults override ``mostly``).

    Example:
        >>> ClaimOptions(alpha=0.01).with_(mostly=1.0).mostly
        1.0
    """

    alpha: float = 0.05
    mostly: float | None = None  # fraction of analysed blocks that must hold; None = the claim's default
    # The boundary's size in the claim's units, per claim as (claim, value) pairs, or one number for the
    # claim being evaluated (a @pytest.mark.resstream on one claim's test); unset = each claim's own.
    min_effect: float | tuple[tuple[str, float], ...] | None = None
    n_resamples: int = 4999
    n_boot: int = 1000
    min_channels: int = 10
    min_images: int = 50  # top-9 exemplars out of fewer images are not channel-specific
    skip_first_block: bool = True  # the papers never analyse block 1.0 (its input is the stem's max-pool)
    lesion: tuple[tuple[str, Any], ...] = ()  # C10's lesion options as (name, value) pairs (see LesionOptions)
    intervention: tuple[tuple[str, Any], ...] = ()  # X1-X4 options as (name, value) pairs (InterventionOptions)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"claim option {name}={getattr(self, name)!r}: {why}")

        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise bad("alpha", "must be strictly between 0 and 1 (e.g. 0.05)")
        if self.mostly is not None and not (isinstance(self.mostly, (int, float)) and 0 < self.mostly <= 1):
            raise bad("mostly", "must be a fraction in (0, 1] (e.g. 0.5, or 1.0 for every block), or None")
        pairs = self.min_effect if isinstance(self.min_effect, tuple) else \
            (() if self.min_effect is None else (("*", self.min_effect),))
        for _, value in pairs:
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise bad("min_effect", "must be a finite number >= 0 in the claim's units (e.g. C3=0.2)")
        for name, low in (("n_resamples", 99), ("n_boot", 0), ("min_channels", 1), ("min_images", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise bad(name, f"must be a whole number >= {low}")

    def with_(self, **changes) -> "ClaimOptions":
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The threshold names a user may set per test (``@pytest.mark.resstream(...)``, ``check_claim(...)``).

        Example:
            >>> ClaimOptions.keys()[:3]
            ('alpha', 'mostly', 'min_effect')
        """
        return tuple(f.name for f in fields(cls) if f.name not in ("lesion", "intervention"))

    @classmethod
    def from_run(cls, claim_options: Mapping, **overrides) -> "ClaimOptions":
        """Options from a run's ``claim_options`` (unset values left out; ``lesion`` and ``intervention``
        are mappings there).

        Example:
            >>> ClaimOptions.from_run({"alpha": 0.01, "mostly": None, "lesion": {"n_random": 20}}).lesion
            (('n_random', 20),)
        """
        kw = {k: v for k, v in claim_options.items() if v is not None}
        if isinstance(kw.get("min_effect"), (list, tuple, Mapping)):  # per claim: "C3=0.2" texts, or pairs
            kw["min_effect"] = parse_min_effects(kw["min_effect"])
        for name in ("lesion", "intervention"):
            if name in kw:
                kw[name] = tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v)
                                        for k, v in dict(kw[name]).items()))
        return cls(**{**kw, **overrides})
