"""Claims: the registry of statistical claims (the papers' C1-C11, ours X1-X4); importing this package registers them.

One module per claim family: ``spectrum`` (C1, C2), ``weights`` (C3), ``inhibition`` (C4),
``scale_invariance`` (C5, C7, C8), ``scale_mechanism`` (C6, C9), ``ablation`` (C10, C11),
``gain_scaling`` (X1, X2: gain and shortcut interventions), ``importance`` (X3, X4: output
effect and attribution per category). ``base``
holds the registry, the context and the one verdict rule (:func:`~.base.summarize`).
Adding a claim on existing measures is one function with ``@register(...)`` in one of
these modules (or a new module imported below).
"""

from __future__ import annotations

from typing import Iterable

from resstream_assert.claims import (ablation, gain_scaling, importance, inhibition,  # noqa: F401
                                     scale_invariance, scale_mechanism, spectrum, weights)
from resstream_assert.claims.base import (REGISTRY, ClaimContext, ClaimOptions, ClaimSpec, claim_order,
                                         parse_min_effects, register)

__all__ = ["REGISTRY", "ClaimContext", "ClaimOptions", "ClaimSpec", "claim_order", "parse_min_effects", "register",
           "resolve_claims", "needed_variants", "catalog"]


def resolve_claims(ids: Iterable[str] | None) -> list[str]:
    """Validate claim ids (case-insensitive, in natural order); ``None`` means every claim that is not opt-in.

    Raises ValueError naming the unknown ids and the registered ones. Opt-in claims (X3, X4:
    minutes on a CPU) run only when named.

    Example:
        >>> resolve_claims(["c3", "C1"])
        ['C1', 'C3']
        >>> "X3" in resolve_claims(None), "X3" in resolve_claims(["X3"])
        (False, True)
    """
    if ids is None:
        return claim_order(c for c, spec in REGISTRY.items() if not spec.opt_in)
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


def catalog(ids: Iterable[str] | None = None) -> dict[str, dict[str, object]]:
    """What a report says about each claim, from the registry (the one source of titles and units):
    ``{id: {"title", "unit", "boundary", "gate"}}`` for ``ids`` (default: every registered claim), in claim
    order; ids that are not registered are left out. ``unit`` is what the claim's effect measures, ``boundary``
    where it must lie to hold (``""`` for a claim checked against a reference value instead).

    Example:
        >>> catalog(["C3"])["C3"]["unit"], catalog(["C3"])["C3"]["boundary"]
        ('Spearman rho of M with the branch gain', '< -0.1')
        >>> catalog(["C6"])["C6"]["title"]
        'Block features are larger-scale copies of the input features (scale equivariance)'
    """
    wanted = claim_order(REGISTRY if ids is None else [c for c in ids if c in REGISTRY])
    out: dict[str, dict[str, object]] = {}
    for cid in wanted:
        spec = REGISTRY[cid]
        b = spec.boundary
        out[cid] = {"title": spec.title, "unit": b.unit if b else "", "gate": spec.gate,
                    "boundary": f"{'>' if b.direction > 0 else '<'} {b.delta:g}" if b else ""}
    return out
