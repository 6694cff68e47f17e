"""resstream_assert: statistical, checkable claims about the residual stream of ResNets.

The flow is one direction: load -> discover -> stimuli -> capture -> measures -> claims ->
gate -> report. Importing this package does not import torch; the functions below do, lazily.

Example:
    >>> import resstream_assert as ra
    >>> model = ra.load_model("zoo:resnet18-synth96")        # doctest: +SKIP
    >>> results = ra.analyze(model)                          # doctest: +SKIP
    >>> [r.verdict for r in results]                         # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy facade: keeps `import resstream_assert` (and the pytest plugin) free of torch.
    lazy = {
        "load_model": ("resstream_assert.pipeline", "load_model"),
        "ModelSpec": ("resstream_assert.loading", "ModelSpec"),
        "discover": ("resstream_assert.discovery", "discover"),
        "ResidualMap": ("resstream_assert.discovery.residual_map", "ResidualMap"),
        "capture": ("resstream_assert.capture", "capture"),
        "Pipeline": ("resstream_assert.pipeline", "Pipeline"),
        "RunConfig": ("resstream_assert.config", "RunConfig"),
        "Responses": ("resstream_assert.capture.responses", "Responses"),
        "analyze": ("resstream_assert.api", "analyze"),
        "evaluate_responses": ("resstream_assert.claims.verdict_stability", "evaluate_responses"),
        "verdict_stability": ("resstream_assert.claims.verdict_stability", "verdict_stability"),
        "embedded_probe": ("resstream_assert.stimuli.probe", "embedded_probe"),
        "load_probe": ("resstream_assert.stimuli.probe", "load_probe"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'resstream_assert' has no attribute {name!r}")
