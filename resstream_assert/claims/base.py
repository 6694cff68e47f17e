"""The claim registry: :func:`register`, :data:`REGISTRY`, and the small tools every claim module uses.

A claim is data (id, title, source, the stimulus variants it needs, default thresholds,
and, when it must run the model again, the intervention it asks for) plus one function
``evaluate(ctx) -> ClaimResult``. Claims read numpy quantities only; they never run a model.

Verdicts follow one rule (:mod:`.decision` per block, :mod:`.summary` over blocks;
:mod:`resstream_assert.gate` turns verdicts into test outcomes).

The parts live beside this module, and every name is importable from here (a claim module
imports what it needs from ``base``): the options (:mod:`.claim_options`), the spec and the
context (:mod:`.context`), block rows (:mod:`.block_rows`) and the summary (:mod:`.summary`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from resstream_assert.claims.block_rows import row
from resstream_assert.claims.claim_options import ClaimOptions, parse_min_effects
from resstream_assert.claims.context import ClaimContext, ClaimSpec, lacks
from resstream_assert.claims.decision import Boundary
from resstream_assert.claims.summary import inconclusive, not_run, summarize
from resstream_assert.results import ClaimResult

if TYPE_CHECKING:
    from resstream_assert.interventions import Request

__all__ = ["REGISTRY", "ZOOM_VARIANTS", "ClaimContext", "ClaimOptions", "ClaimSpec", "claim_order", "inconclusive",
           "lacks", "not_run", "parse_min_effects", "register", "row", "split_halves", "summarize"]

ZOOM_VARIANTS = ("zoom1.1", "zoom1.2", "zoom1.3", "zoom1.4", "zoom1.5", "zoom1.75", "zoom2.0")


REGISTRY: dict[str, ClaimSpec] = {}


def register(id: str, title: str, source: str, test: str, *, needs: Sequence[str] = ("id",),
             mostly: float = 0.5, gate: bool = True, prepare: Callable[[ClaimContext], "Request"] | None = None,
             opt_in: bool = False, boundary: Boundary | None = None):
    """Decorator registering ``evaluate(ctx) -> ClaimResult`` as claim ``id``.

    Example:
        >>> @register("X1", "demo", "ours", "none")  # doctest: +SKIP
        ... def evaluate(ctx): ...
    """

    def wrap(fn: Callable[[ClaimContext], ClaimResult]):
        if id in REGISTRY:
            raise ValueError(f"claim {id!r} is registered twice ({REGISTRY[id].evaluate.__module__} and {fn.__module__})")
        REGISTRY[id] = ClaimSpec(id, title, source, test, fn, tuple(needs), mostly, gate, prepare, opt_in, boundary)
        return fn

    return wrap


def split_halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``n`` image indices into two disjoint sorted halves (A: ``n // 2`` images).

    Example:
        >>> a, b = split_halves(6, np.random.default_rng(0))
        >>> sorted(np.concatenate([a, b]).tolist()), len(a), bool(np.intersect1d(a, b).size)
        ([0, 1, 2, 3, 4, 5], 3, False)
    """
    perm = rng.permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def claim_order(ids) -> list[str]:
    """Claim ids sorted by prefix, then numerically (the papers' C2 before C10, then ours, X1...).

    Example:
        >>> claim_order(["X1", "C10", "C2"])
        ['C2', 'C10', 'X1']
    """
    def key(c: str) -> tuple:
        prefix = "".join(ch for ch in c if not ch.isdigit())
        return (prefix, int("".join(ch for ch in c if ch.isdigit()) or 0), c)

    return sorted(ids, key=key)
