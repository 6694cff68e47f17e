"""A run's settings (:class:`RunConfig`), built from option values by :func:`build_run_config`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from resstream_assert.config.options import (DEFAULT_MODEL, FEATVIZ_OPTIONS, OPTIONS, RUN_FIELDS, check_value,
                                             parse_intervention_options, parse_lesion_options)
from resstream_assert.errors import ConfigError
from resstream_assert.kinds import Backend, Engine, Resize, Stimuli, StimulusSource, Storage

if TYPE_CHECKING:
    from resstream_assert.loading.spec import ModelSpec


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Same config and seed -> same numbers.

    Example:
        >>> RunConfig(models=("torchvision:resnet18",)).images
        512
    """

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    probe: str | None = None
    images: int = 512
    batch_size: int = 64
    device: str = "cpu"
    seed: int = 0
    input_size: int | None = None
    cache_dir: str | None = None
    trust_pickle: bool = False
    safe_globals: tuple[str, ...] = ()  # classes a checkpoint may hold besides tensors (torch.serialization)
    backends: tuple[Backend, ...] = ()
    engine: Engine = "auto"  # what runs a torch model's forwards: auto (onnxruntime on CPU), torch, onnxruntime
    storage: Storage = "auto"  # captured responses: auto (id float32, transformed variants float16), float16, float32
    providers: tuple[str, ...] = ()
    progress: bool = True
    survey: bool = False  # report verdicts without failing tests (the suite xfails failing claims)
    claim_options: dict = field(default_factory=dict)
    claims: tuple[str, ...] | None = None  # the claims this run evaluates; None = every registered claim
    shard: tuple[int, int] | None = None  # (i, n): this run tests models i, i+n, i+2n, ... (1-based) of `models`
    stimuli: Stimuli = "exemplars"  # exemplars | featviz | both
    channels: int | None = None  # featviz: channels sampled per block (None = all)
    featviz: dict = field(default_factory=dict)  # featviz settings: steps, lr, seeds, regime, jitter, size, ...
    stability: int = 0  # re-evaluations on probe half-samples and other seeds (0 = off; claims/verdict_stability.py)
    labels: tuple[str, ...] = ()  # --resstream-label: one short name per model, in order (default: ModelSpec.label)
    # The models' input normalisation (R, G, B of images in [0, 1]); None = each model's own (zoo card, ONNX
    # metadata, else ImageNet's). Given together, for every model of the run (pipeline.load_model applies them).
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: Resize = "crop"  # probe photographs to the square input: crop (shorter side, centre) or stretch
    class_index: str | None = None  # JSON file: model class index -> [class folder name, label]
    # The models parsed, once, in order (set by __post_init__; not an option): what travels with the run.
    specs: tuple["ModelSpec", ...] = field(init=False, repr=False, compare=False)

    @property
    def sources(self) -> tuple[StimulusSource, ...]:
        """The stimulus sources this run evaluates claims on, in report order.

        Example:
            >>> RunConfig(stimuli="both").sources
            ('exemplars', 'featviz')
        """
        return ("exemplars", "featviz") if self.stimuli == "both" else (self.stimuli,)

    def __post_init__(self) -> None:
        """Every value is checked as its option is (``RUN_FIELDS``: the same table and checks), whether the
        RunConfig comes from the command line or from Python."""
        for name, path in RUN_FIELDS.items():
            value = _option_value(self, path)
            if name in ("lesion", "intervention"):
                _check_key_values(name, value)
            else:
                check_value(name, value)
        object.__setattr__(self, "specs", _parse_models(self.models))
        self.model_labels()  # refuses a label count that does not fit, or two models with one label
        _check_models(self)
        _check_normalisation(self.mean, self.std)

    def with_(self, **changes) -> "RunConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def with_options(self, **options: Any) -> "RunConfig":
        """A copy with options changed, named as on the command line with ``_`` for ``-`` (``--resstream-input-size``
        is ``input_size``): one table (:data:`~resstream_assert.config.options.RUN_FIELDS`) for both, so Python
        takes every option the command line takes, in the same units, checked by the same checks.

        Example:
            >>> cfg = RunConfig().with_options(images=64, input_size=32, alpha=0.01, claims=["C3", "C1"])
            >>> cfg.images, cfg.input_size, cfg.claim_options["alpha"], cfg.claims
            (64, 32, 0.01, ('C1', 'C3'))
            >>> RunConfig().with_options(image=64)
            Traceback (most recent call last):
            ...
            TypeError: unknown option 'image' (did you mean images?); the options: ...
        """
        changes: dict[str, Any] = {}
        nested: dict[str, dict] = {"claim_options": dict(self.claim_options), "featviz": dict(self.featviz)}
        for key, value in options.items():
            name = key.replace("_", "-")
            path = RUN_FIELDS.get(name) if name != "model" else None
            if path is None:
                import difflib

                close = difflib.get_close_matches(name, list(PYTHON_OPTIONS_OF), n=1)
                hint = f" (did you mean {close[0].replace('-', '_')}?)" if close else ""
                raise TypeError(f"unknown option {key!r}{hint}; the options: "
                                + ", ".join(n.replace("-", "_") for n in PYTHON_OPTIONS_OF))
            head, _, sub = path.partition(".")
            value = _python_value(name, value)
            if sub:
                nested[head][sub] = value
            else:
                changes[head] = value
        changes.update(nested)
        return replace(self, **changes)

    def model_labels(self) -> tuple[str, ...]:
        """One label per model: ``--resstream-label`` where given, else the spec with paths cut to file names.

        Example:
            >>> RunConfig(models=("torchvision:resnet18@/runs/v2/r18.pth",)).model_labels()
            ('torchvision:resnet18@r18.pth',)
        """
        if self.labels and len(self.labels) != len(self.models):
            raise ConfigError(f"--resstream-label was given {len(self.labels)} time(s) for {len(self.models)} "
                              "model(s): give one label per --resstream-model, in the same order, or none.")
        labels = [str(x).strip() for x in self.labels] if self.labels else [s.label for s in self.specs]
        bad = [x for x in labels if not x or any(c.isspace() or c in "[]" for c in x)]
        if bad:
            raise ConfigError(f"--resstream-label {bad[0]!r}: a label must be non-empty, without spaces or brackets "
                              "(e.g. r18-v2).")
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"two models get the label {twice[0]!r} in reports ({', '.join(self.models)}): name "
                              "them apart with --resstream-label, once per --resstream-model.")
        return tuple(labels)

    def label_of(self, spec: str) -> str:
        """The label of ``spec`` in this run (its own label when it is not one of the run's models).

        Example:
            >>> RunConfig(models=("zoo:resnet18-synth96",), labels=("r18",)).label_of("zoo:resnet18-synth96")
            'r18'
        """
        if spec in self.models:
            return self.model_labels()[self.models.index(spec)]
        return self.spec_of(spec).label

    def spec_of(self, spec: str) -> "ModelSpec":
        """``spec`` parsed: the run's own parse for one of its models, else parsed at this edge (a model an
        assertion helper names that the run does not list).

        Example:
            >>> RunConfig(models=("zoo:resnet18-synth96",)).spec_of("zoo:resnet18-synth96").kind
            'zoo'
        """
        if spec in self.models:
            return self.specs[self.models.index(spec)]
        from resstream_assert.loading.spec import as_spec

        return as_spec(spec)

    def to_dict(self) -> dict:
        """JSON-ready form (stored in reports). The cache directory is left out: it is a local
        path, says nothing about the results, and would make committed baselines machine-specific.
        ``claims``, ``shard`` and ``stability`` appear only when set, the feature-visualization settings only
        when used. For the same reason ``models`` holds the models' labels (file names, not paths)."""
        skip = {"cache_dir", "labels", "specs"} | {k for k in ("claims", "shard") if getattr(self, k) is None}
        if not self.stability:
            skip.add("stability")
        if not self.safe_globals:
            skip.add("safe_globals")
        if self.stimuli == "exemplars":
            skip |= {"stimuli", "channels", "featviz"}
        # Preprocessing left at its defaults is left out, so reports and baselines written before these options
        # existed compare equal; each model's normalisation in use is in the report's model_info.
        skip |= {k for k in ("mean", "std", "class_index") if getattr(self, k) is None}
        if self.resize == "crop":
            skip.add("resize")
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k not in skip}
        out["models"] = list(self.model_labels())
        if self.class_index is not None:  # its name, not a machine path (the labels it gives are in the probe digest)
            import ntpath

            out["class_index"] = ntpath.basename(str(self.class_index).rstrip("/\\"))
        return out


#: The options a Python caller may set (:meth:`RunConfig.with_options`, ``analyze(..., NAME=value)``), in the
#: options table's order; the model is the first argument of ``analyze`` instead.
PYTHON_OPTIONS_OF = tuple(o.name for o in OPTIONS if o.name in RUN_FIELDS and o.name != "model")


def _python_value(name: str, value: Any) -> Any:
    """A Python value of option ``name`` in the form its RunConfig field holds: ``claims=["C1"]`` or ``"C1,C3"``,
    ``backend="onnx"`` or a list, ``shard="1/2"`` or ``(1, 2)``, ``lesion={"n_random": 20}`` or ``["n_random=20"]``."""
    if value is None:
        return None
    if name == "claims":
        from resstream_assert.claims import resolve_claims

        ids = [c for c in value.split(",") if c.strip()] if isinstance(value, str) else list(value)
        try:
            return tuple(resolve_claims(ids))
        except ValueError as exc:
            raise ConfigError(f"claims={value!r}: {exc}") from None
    if name == "min-effect":  # {"C3": 0.2}, ["C3=0.2"] or "C3=0.2": held as the command line's list
        from resstream_assert.claims import parse_min_effects

        try:
            return [f"{c}={v:g}" for c, v in parse_min_effects([value] if isinstance(value, str) else value)]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"min_effect={value!r}: {exc}") from None
    if name in ("backend", "label", "safe-globals"):
        return (value,) if isinstance(value, str) else tuple(value)
    if name == "providers":
        return tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else tuple(value)
    if name == "shard" and isinstance(value, str):
        parts = value.split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            check_value("shard", value)  # raises, naming the form I/N
        return tuple(int(p) for p in parts)
    if name in ("lesion", "intervention") and not isinstance(value, Mapping):
        parse = parse_lesion_options if name == "lesion" else parse_intervention_options
        return parse([str(v) for v in ([value] if isinstance(value, str) else value)])
    return dict(value) if isinstance(value, Mapping) else value


def _option_value(cfg: RunConfig, path: str) -> Any:
    """The value of a RunConfig field in its option's form (``(2, 4)`` -> ``"2/4"``, tuples -> lists)."""
    head, _, key = path.partition(".")
    value = getattr(cfg, head)
    if key:
        value = value.get(key) if isinstance(value, Mapping) else None
    if head == "shard" and isinstance(value, tuple):
        return "/".join(map(str, value))
    if head in ("providers", "claims") and isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return list(value) if isinstance(value, tuple) and head in ("models", "backends", "labels", "safe_globals", "mean",
                                                                "std") else value


def _check_key_values(name: str, value: Any) -> None:
    """``claim_options["lesion"]`` / ``["intervention"]``: a mapping the KEY=VALUE options would give."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"--resstream-{name}: expected a mapping of KEY: VALUE, got {type(value).__name__}")
    from resstream_assert.interventions.lesion import LesionOptions
    from resstream_assert.interventions.settings import InterventionOptions

    options = LesionOptions if name == "lesion" else InterventionOptions
    try:
        options.from_mapping(value).check()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--resstream-{name}: {exc}") from None


def _parse_models(models: Sequence[str]) -> tuple["ModelSpec", ...]:
    """The run's model specs parsed, each refused with the option it came from when it cannot be read."""
    from resstream_assert.errors import ModelSpecError
    from resstream_assert.loading.spec import as_spec

    specs = []
    for spec in models:
        try:
            specs.append(as_spec(spec))
        except ModelSpecError as exc:
            raise ConfigError(f"--resstream-model {spec}: {exc}") from None
    return tuple(specs)


def _check_models(cfg: RunConfig) -> None:
    """What the model list makes pointless: an empty shard, an engine no model runs on."""
    if cfg.shard is not None and cfg.shard[0] > len(cfg.models):
        raise ConfigError(f"--resstream-shard {cfg.shard[0]}/{cfg.shard[1]}: the run has {len(cfg.models)} model(s), "
                          f"so shard {cfg.shard[0]} gets none and would check nothing. Use at most {len(cfg.models)} "
                          "shard(s), or give more models.")
    if cfg.engine != "auto":
        torch_backed = [m for m in cfg.specs if m.kind != "onnx" and
                        (not cfg.backends or "torch" in cfg.backends)]
        if not torch_backed:
            raise ConfigError(f"--resstream-engine {cfg.engine}: the engine runs a torch model's forward passes, and "
                              "every model of this run runs on onnxruntime (an ONNX file, or --resstream-backend "
                              "onnx), so it would change nothing. Drop the option.")


def _check_normalisation(mean: Any, std: Any) -> None:
    """A mean without a std (or the reverse) would normalise with half of one model's statistics and half of
    another's: both are given, or neither."""
    if (mean is None) != (std is None):
        given, missing = ("mean", "std") if std is None else ("std", "mean")
        example = {"mean": "0.4914 0.4822 0.4465", "std": "0.2470 0.2435 0.2616"}[missing]
        raise ConfigError(f"--resstream-{given} was given without --resstream-{missing} (Python: {given}= without "
                          f"{missing}=): a model's normalisation is (image - mean) / std per channel, so give both, "
                          f"e.g. --resstream-{missing} {example}, or neither for each model's own.")


def checked_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None
                          ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` as tuples, checked as ``--resstream-mean`` / ``--resstream-std`` are, or None (neither given:
    the model's own normalisation).

    Example:
        >>> checked_normalisation([0.5, 0.5, 0.5], (0.25, 0.25, 0.25))
        ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    """
    if mean is None and std is None:
        return None
    _check_normalisation(mean, std)
    assert mean is not None and std is not None  # given together (checked just above)
    mean, std = [list(v) if isinstance(v, tuple) else v for v in (mean, std)]
    check_value("mean", mean)
    check_value("std", std)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def build_run_config(values: Mapping[str, Any], *, cache_dir: str | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from option values (``{name: value}``, ``None`` = unset -> default).

    Example:
        >>> build_run_config({"images": 64, "alpha": 0.01}).claim_options["alpha"]
        0.01
    """
    checked: dict[str, Any] = {}
    for opt in OPTIONS:  # every option is checked at start-up, used here or not
        v = values.get(opt.name)
        checked[opt.name] = opt.default if v is None else v
        check_value(opt.name, checked[opt.name])

    def get(name: str) -> Any:
        return checked[name]

    claims_text = get("claims")
    claims = None
    if claims_text:
        from resstream_assert.claims import resolve_claims

        try:
            claims = tuple(resolve_claims([c for c in str(claims_text).split(",") if c.strip()]))
        except ValueError as exc:
            raise ConfigError(f"--resstream-claims {claims_text}: {exc}") from None
    from resstream_assert.claims import parse_min_effects  # checked above: the claims are known

    min_effect = [f"{c}={v:g}" for c, v in parse_min_effects(get("min-effect"))] or None
    claim_options = {"alpha": get("alpha"), "mostly": get("mostly"), "min_effect": min_effect,
                     "n_resamples": get("resamples")}
    lesion = parse_lesion_options(list(get("lesion") or []))
    if lesion:
        claim_options["lesion"] = lesion
    intervention = parse_intervention_options(list(get("intervention") or []))
    if intervention:
        claim_options["intervention"] = intervention
    providers = tuple(p.strip() for p in str(get("providers") or "").split(",") if p.strip())
    return RunConfig(
        models=tuple(get("model") or [DEFAULT_MODEL]), probe=get("probe"), images=int(get("images")),
        batch_size=int(get("batch-size")), device=str(get("device")), seed=int(get("seed")),
        input_size=get("input-size"), cache_dir=cache_dir, trust_pickle=bool(get("trust-pickle")),
        safe_globals=tuple(get("safe-globals") or ()),
        backends=tuple(get("backend") or ()), engine=get("engine"), providers=providers,
        storage=get("storage"),
        survey=bool(get("survey")), claim_options=claim_options, claims=claims,
        shard=_shard(get("shard")), stimuli=get("stimuli"), channels=get("channels"),
        featviz={field_: get(name) for name, field_ in FEATVIZ_OPTIONS.items()}, stability=int(get("stability")),
        labels=tuple(get("label") or ()), mean=_rgb(get("mean")), std=_rgb(get("std")), resize=get("resize"),
        class_index=get("class-index"))


def _rgb(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    r, g, b = (float(v) for v in value)  # three numbers: checked by the option's check
    return r, g, b


def _shard(value: Any) -> tuple[int, int] | None:
    if not value:
        return None
    i, n = (int(x) for x in str(value).split("/"))  # I/N: checked by the option's check
    return i, n
