"""The library entry point without pytest: ``analyze(model) -> [ClaimResult, ...]``.

Example:
    >>> import resstream_assert as ra
    >>> results = ra.analyze("zoo:resnet18-synth96", claims=["C1", "C3"], images=256)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect  # noqa: F401 - the signature's annotation
import re
from typing import Any, Callable, Iterable, Sequence

from resstream_assert.config import DEFAULT_MODEL, RunConfig
from resstream_assert.pipeline import Pipeline, model_refs
from resstream_assert.results import ClaimResult

__all__ = ["analyze", "trend"]


def analyze(model: Any = DEFAULT_MODEL, *, config: RunConfig | None = None, options=None,
            **settings: Any) -> list[ClaimResult]:
    """Run the claims on a model and return the results, without pytest.

    ``model`` is a model spec (``"zoo:resnet18-synth96"``, ``"mynet.py:make_net@weights.pth"``, ...) or a model
    loaded by :func:`resstream_assert.load_model`. Every other keyword is an option of the options table by
    its Python name (``--resstream-input-size`` is ``input_size``; ``claims=["C1", "C3"]``, ``images=256``,
    ``probe="cifar10"``, ``seed=1``, ``alpha=0.01``, ``backend="onnx"``, ``stimuli="featviz"``, ...), with the
    command line's defaults and checks; a name that is not an option is a TypeError naming the options.
    ``config`` is a :class:`RunConfig` the options start from (default: the defaults); ``options`` a
    :class:`~resstream_assert.claims.ClaimOptions` that replaces the thresholds entirely.

    One result per claim, backend and stimulus source, in claim order.

    Example:
        >>> results = analyze("zoo:cifar-resnet20-synth32", claims=["C1", "C3"], images=64)  # doctest: +SKIP
        >>> [(r.claim, r.verdict.value) for r in results]  # doctest: +SKIP
        [('C1', 'fails'), ('C3', 'inconclusive')]
        >>> analyze("zoo:cifar-resnet20-synth32", image=64)
        Traceback (most recent call last):
        ...
        TypeError: analyze(): unknown option 'image' (did you mean images?); the options: ...
    """
    from resstream_assert.loading import LoadedModel

    loaded = model if isinstance(model, LoadedModel) else None
    spec = loaded.spec if loaded is not None else model
    if not isinstance(spec, str):
        raise TypeError(f"analyze() takes a model spec (e.g. 'mynet.py:make_net@weights.pth') or a model loaded by "
                        f"resstream_assert.load_model(...), not a {type(model).__name__}")
    base = config or RunConfig()
    keep = (base.label_of(spec),) if base.labels and spec in base.models else ()
    try:
        config = base.with_(models=(spec,), labels=keep).with_options(**settings)
    except TypeError as exc:
        raise TypeError(f"analyze(): {exc}") from None
    pipe = Pipeline(config)
    if loaded is not None:
        pipe.adopt(loaded)
    return [r for ref in model_refs(config)
            for r in pipe.evaluate(ref.spec, ref.backend, config.claims, options, stimuli=ref.stimuli).values()]


def _signature() -> "inspect.Signature":
    """``analyze``'s signature as ``help()`` and editors show it: every option of the table by name, with its default
    (the function takes them as ``**settings``; one table drives the command line and Python)."""
    import inspect

    from resstream_assert.config.options import OPTION
    from resstream_assert.config.run import PYTHON_OPTIONS_OF

    kw = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature(
        [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=DEFAULT_MODEL),
         inspect.Parameter("config", kw, default=None), inspect.Parameter("options", kw, default=None)]
        + [inspect.Parameter(n.replace("-", "_"), kw, default=OPTION[n].default) for n in PYTHON_OPTIONS_OF],
        return_annotation="list[ClaimResult]")


analyze.__signature__ = _signature()  # type: ignore[attr-defined]


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
