"""resstream_assert: statistical, checkable claims about the residual stream of ResNets.

The flow is one direction: load -> discover -> stimuli -> capture -> measures -> claims ->
gate -> report. Importing this package does not import torch; the functions below do, lazily.

Example:
    >>> import resstream_assert as ra
    >>> "analyze" in dir(ra) and "load_model" in dir(ra)
    True
    >>> model = ra.load_model("zoo:cifar-resnet20-synth32")  # doctest: +SKIP
    >>> results = ra.analyze(model, claims=["C1", "C3"], images=256)  # doctest: +SKIP
    >>> [(r.claim, r.verdict.value) for r in results]  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"


#: The public names, imported on first use: ``import resstream_assert`` stays free of torch (and of pytest).
_LAZY = {
    "analyze": ("resstream_assert.api", "analyze"),
    "load_model": ("resstream_assert.pipeline", "load_model"),
    "discover": ("resstream_assert.discovery", "discover"),
    "capture": ("resstream_assert.capture", "capture"),
    "evaluate_responses": ("resstream_assert.claims.verdict_stability", "evaluate_responses"),
    "verdict_stability": ("resstream_assert.claims.verdict_stability", "verdict_stability"),
    "embedded_probe": ("resstream_assert.stimuli.probe", "embedded_probe"),
    "load_probe": ("resstream_assert.stimuli.probe", "load_probe"),
    "trend": ("resstream_assert.api", "trend"),
    "ModelSpec": ("resstream_assert.loading", "ModelSpec"),
    "LoadedModel": ("resstream_assert.loading", "LoadedModel"),
    "ResidualMap": ("resstream_assert.discovery.residual_map", "ResidualMap"),
    "Responses": ("resstream_assert.capture.responses", "Responses"),
    "Pipeline": ("resstream_assert.pipeline", "Pipeline"),
    "RunConfig": ("resstream_assert.config", "RunConfig"),
    "ClaimResult": ("resstream_assert.results", "ClaimResult"),
    "Verdict": ("resstream_assert.results", "Verdict"),
    "REGISTRY": ("resstream_assert.claims", "REGISTRY"),
}
__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    # Lazy facade: keeps `import resstream_assert` (and the pytest plugin) free of torch.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'resstream_assert' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (completion and ``dir(resstream_assert)`` list them before they are imported)."""
    return sorted(set(__all__) | {k for k in globals() if k.startswith("__")})
