"""The library entry point without pytest: ``analyze(model) -> [ClaimResult, ...]``.

Example:
    >>> import resstream_assert as ra
    >>> results = ra.analyze("zoo:resnet18-synth96", claims=["C1", "C3"])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline
from resstream_assert.results import ClaimResult

__all__ = ["analyze", "trend"]


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


def trend(specs: Sequence[str], *, labels: Sequence[str] | None = None, claims: Iterable[str] | None = None,
          config: RunConfig | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The claims on each checkpoint of a training run, in the order given (claims over training).

    Each spec is run as :func:`analyze` runs it, with the same configuration (probe, images, input
    size, seed), so the checkpoints differ in their weights only. C1 is always evaluated: its block
    rows give the skip / mix / overwrite proportions. Returns the JSON form
    :mod:`resstream_assert.report.trend` renders.

    Example:
        >>> t = trend([f"torchvision:resnet18@runs/r18/epoch-{e:03d}.safetensors" for e in (0, 5, 20)],
        ...           claims=["C1", "C3"], config=RunConfig(images=256, input_size=64))  # doctest: +SKIP
        >>> [r["verdict"] for r in t["claims"]["C3"]["rows"]]  # doctest: +SKIP
        ['fails', 'inconclusive', 'holds']
    """
    from resstream_assert.claims import resolve_claims
    from resstream_assert.report.trend import TREND_FORMAT

    from resstream_assert.errors import ConfigError

    if not specs:
        raise ConfigError("trend needs at least one checkpoint spec, in training order")
    labels = list(labels) if labels else [_short(s) for s in specs]
    if len(labels) != len(specs) or len(set(labels)) != len(labels):
        raise ConfigError(f"trend needs one distinct label per checkpoint: {len(specs)} specs, labels {labels}; "
                          "pass --labels with one name per checkpoint, e.g. --labels epoch-0,epoch-5,epoch-20")
    config = config or RunConfig()
    ids = resolve_claims(list(claims) if claims is not None else config.claims)
    ids = ids if "C1" in ids else ["C1", *ids]
    numbers = [re.findall(r"\d+", lab) for lab in labels]
    xs = [int(n[-1]) for n in numbers] if all(numbers) else list(range(len(labels)))
    out: dict[str, Any] = {"format": TREND_FORMAT, "claims": {}, "categories": {},
                           "checkpoints": [{"label": lab, "spec": s, "x": x} for lab, s, x in zip(labels, specs, xs)]}
    for i, (spec, label) in enumerate(zip(specs, labels)):
        if progress is not None:
            progress(f"[resstream] trend: checkpoint {i + 1}/{len(specs)} {label}")
        results = Pipeline(config.with_(models=(spec,), labels=(label,))).evaluate(spec, "torch", ids)
        for claim, r in results.items():
            d = r.to_dict()
            entry = out["claims"].setdefault(claim, {"title": r.title, "rows": []})
            entry["rows"].append({"checkpoint": label, **{k: d[k] for k in ("verdict", "effect", "ci_low", "ci_high",
                                                                             "p_adjusted", "reason")}})
        for row in results["C1"].rows:
            shares = out["categories"].setdefault(row.block, {k: [None] * len(specs) for k in ("skip", "mix",
                                                                                                "overwrite")})
            for k in shares:
                v = row.values.get(f"frac_{k}")
                shares[k][i] = None if v is None or v != v else float(v)
    return out


def _short(spec: str) -> str:
    """A checkpoint's label from its spec: the weights file's name without its suffix."""
    weights = spec.rpartition("@")[2] if "@" in spec else spec
    return re.sub(r"\.(safetensors|pth?|ckpt|bin|onnx)$", "", weights.replace("\\", "/").rsplit("/", 1)[-1])
