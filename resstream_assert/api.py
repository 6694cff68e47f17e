"""The library entry point without pytest: ``analyze(model) -> [ClaimResult, ...]``.

Example:
    >>> import resstream_assert as ra
    >>> results = ra.analyze("zoo:resnet18-synth96", claims=["C1", "C3"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Iterable

from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline
from resstream_assert.results import ClaimResult

__all__ = ["analyze"]


def analyze(model: str = "zoo:resnet18-synth96", *, claims: Iterable[str] | None = None,
            config: RunConfig | None = None, options=None, backend: str = "torch",
            stimuli: str = "exemplars") -> list[ClaimResult]:
    """Run the claims on a model spec and return the results, without pytest.

    ``options`` is a :class:`~resstream_assert.claims.ClaimOptions` (default: the config's);
    ``stimuli="featviz"`` runs the claims on feature visualizations (settings from ``config``).

    Example:
        >>> results = analyze("zoo:resnet18-synth96", claims=["C1", "C3"])  # doctest: +SKIP
        >>> [(r.claim, r.verdict.value) for r in results]  # doctest: +SKIP
    """
    config = config or RunConfig()
    label = config.label_of(model) if config.labels and model in config.models else None
    config = config.with_(models=(model,), labels=(label,) if label else ())
    return list(Pipeline(config).evaluate(model, backend, claims, options, stimuli=stimuli).values())
