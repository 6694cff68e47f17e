"""The claims registry: importing this package registers every built-in claim (C1-C11)."""

from __future__ import annotations

import importlib

from resstream_assert.claims.base import REGISTRY, ClaimContext, ClaimOptions, ClaimSpec, claim_order, register

# Each module registers its claims on import; a module still missing (work in progress) is skipped.
for _name in ("spectrum", "weights", "inhibition", "scale", "scale_mechanism", "ablation"):
    try:
        importlib.import_module(f"resstream_assert.claims.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"resstream_assert.claims.{_name}":
            raise

__all__ = ["REGISTRY", "ClaimContext", "ClaimOptions", "ClaimSpec", "claim_order", "register"]
