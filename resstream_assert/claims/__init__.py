"""Claims: the registry of statistical claims (C1-C11); importing this package registers them all.

One module per claim family: ``spectrum`` (C1, C2), ``weights`` (C3), ``inhibition`` (C4),
``scale`` (C5, C7, C8), ``scale_mechanism`` (C6, C9), ``ablation`` (C10, C11). ``base``
holds the registry, the context and the one verdict rule (:func:`~.base.summarize`).
Adding a claim on existing measures is one function with ``@register(...)`` in one of
these modules (or a new module imported below).
"""

from __future__ import annotations

from typing import Iterable

from resstream_assert.claims import ablation, inhibition, scale, scale_mechanism, spectrum, weights  # noqa: F401
from resstream_assert.claims.base import REGISTRY, ClaimContext, ClaimOptions, ClaimSpec, claim_order, register

__all__ = ["REGISTRY", "ClaimContext", "ClaimOptions", "ClaimSpec", "claim_order", "register", "resolve_claims",
           "needed_variants"]


def resolve_claims(ids: Iterable[str] | None) -> list[str]:
    """Validate claim ids (case-insensitive, in natural order); ``None`` means every registered claim.

    Raises ValueError naming the unknown ids and the registered ones.

    Example:
        >>> resolve_claims(["c3", "C1"])
        ['C1', 'C3']
    """
    if ids is None:
        return claim_order(REGISTRY)
    wanted = [str(c).strip().upper() for c in ids]
    unknown = [c for c in wanted if c not in REGISTRY]
    if unknown or not wanted:
        raise ValueError(f"unknown claim id(s) {unknown or wanted}; registered: {', '.join(claim_order(REGISTRY))}")
    return claim_order(set(wanted))


def needed_variants(claim_ids: Iterable[str]) -> tuple[str, ...]:
    """The stimulus variants the given claims need, ``id`` first.

    Example:
        >>> needed_variants(["C1", "C3"])
        ('id',)
    """
    out = ["id"]
    for cid in claim_ids:
        out += [v for v in REGISTRY[cid].needs if v not in out]
    return tuple(out)
