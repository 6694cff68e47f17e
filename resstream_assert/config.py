"""A run's settings: every option of the plugin (also an ini key), validated once, at start-up.

``OPTIONS`` is the one table of options (name, type, default, help, check); the pytest
plugin turns it into command-line flags and ini keys, and :func:`build_run_config` turns the
values into a :class:`RunConfig`, refusing any value that could not give an honest result
(an alpha of 2, an unknown claim id, a negative seed, ...) with a :class:`ConfigError` that
says which option and what to do. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from resstream_assert.errors import ResstreamError

DEFAULT_MODEL = "zoo:resnet18-synth96"
STIMULI = ("exemplars", "featviz", "both")
#: featviz option name -> FeatvizSettings field (see resstream_assert/interventions/featviz.py).
FEATVIZ_OPTIONS = {"featviz-steps": "steps", "featviz-lr": "lr", "featviz-seeds": "seeds",
                   "featviz-regime": "regime", "featviz-jitter": "jitter", "featviz-size": "size",
                   "featviz-device": "device", "featviz-amp": "amp", "featviz-batch-size": "batch_size"}


class ConfigError(ResstreamError, ValueError):
    """An option value that cannot be used (the plugin reports it as a usage error, exit status 4)."""


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
    backends: tuple[str, ...] = ()
    engine: str = "auto"  # what runs a torch model's forwards: auto (onnxruntime on CPU), torch, onnxruntime
    providers: tuple[str, ...] = ()
    progress: bool = True
    survey: bool = False  # report verdicts without failing tests (the suite xfails failing claims)
    claim_options: dict = field(default_factory=dict)
    claims: tuple[str, ...] | None = None  # the claims this run evaluates; None = every registered claim
    shard: tuple[int, int] | None = None  # (i, n): this run tests models i, i+n, i+2n, ... (1-based) of `models`
    stimuli: str = "exemplars"  # exemplars | featviz | both
    channels: int | None = None  # featviz: channels sampled per block (None = all)
    featviz: dict = field(default_factory=dict)  # featviz settings: steps, lr, seeds, regime, jitter, size, ...
    stability: int = 0  # re-evaluations on probe half-samples and other seeds (0 = off; claims/stability.py)
    labels: tuple[str, ...] = ()  # --resstream-label: one short name per model, in order (default: ModelSpec.label)

    @property
    def sources(self) -> tuple[str, ...]:
        """The stimulus sources this run evaluates claims on, in report order.

        Example:
            >>> RunConfig(stimuli="both").sources
            ('exemplars', 'featviz')
        """
        return ("exemplars", "featviz") if self.stimuli == "both" else (self.stimuli,)

    def __post_init__(self) -> None:
        for name, value in (("images", self.images), ("batch-size", self.batch_size), ("device", self.device),
                            ("seed", self.seed), ("input-size", self.input_size), ("backend", self.backends)):
            check_value(name, value)
        self.model_labels()  # refuses a label count that does not fit, or two models with one label

    def with_(self, **changes) -> "RunConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def model_labels(self) -> tuple[str, ...]:
        """One label per model: ``--resstream-label`` where given, else the spec with paths cut to file names.

        Example:
            >>> RunConfig(models=("torchvision:resnet18@/runs/v2/r18.pth",)).model_labels()
            ('torchvision:resnet18@r18.pth',)
        """
        from resstream_assert.errors import ModelSpecError
        from resstream_assert.loading.spec import ModelSpec

        if self.labels and len(self.labels) != len(self.models):
            raise ConfigError(f"--resstream-label was given {len(self.labels)} time(s) for {len(self.models)} "
                              "model(s): give one label per --resstream-model, in the same order, or none.")
        labels = []
        for i, spec in enumerate(self.models):
            if self.labels:
                labels.append(str(self.labels[i]).strip())
                continue
            try:
                labels.append(ModelSpec.parse(spec).label)
            except ModelSpecError as exc:
                raise ConfigError(f"--resstream-model {spec}: {exc}") from None
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
        from resstream_assert.loading.spec import ModelSpec

        if spec in self.models:
            return self.model_labels()[self.models.index(spec)]
        return ModelSpec.parse(spec).label

    def to_dict(self) -> dict:
        """JSON-ready form (stored in reports). The cache directory is left out: it is a local
        path, says nothing about the results, and would make committed baselines machine-specific.
        ``claims``, ``shard`` and ``stability`` appear only when set, the feature-visualization settings only
        when used. For the same reason ``models`` holds the models' labels (file names, not paths)."""
        skip = {"cache_dir", "labels"} | {k for k in ("claims", "shard") if getattr(self, k) is None}
        if not self.stability:
            skip.add("stability")
        if self.stimuli == "exemplars":
            skip |= {"stimuli", "channels", "featviz"}
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k not in skip}
        out["models"] = list(self.model_labels())
        return out


# --- checks: each returns "" or what is wrong -----------------------------------------------

def _positive(v: Any) -> str:
    return "" if v is None or v >= 1 else "must be a positive whole number"


def _non_negative(v: Any) -> str:
    return "" if v is None or v >= 0 else "must be 0 or a positive whole number"


def _open_unit(v: Any) -> str:
    return "" if v is None or 0 < v < 1 else "must be strictly between 0 and 1 (e.g. 0.05)"


def _fraction(v: Any) -> str:
    return "" if v is None or 0 < v <= 1 else "must be a fraction in (0, 1] (e.g. 0.5, or 1.0 for every block)"


def _finite_non_negative(v: Any) -> str:
    return "" if v is None or (math.isfinite(v) and v >= 0) else "must be a finite number >= 0"


def _resamples(v: Any) -> str:
    return "" if v is None or v >= 99 else "must be at least 99 (the smallest permutation p-value is 1/(N+1))"


def _device(v: Any) -> str:
    return "" if v is None or re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(v)) else "must be cpu, cuda, cuda:N or mps"


def _shard(v: Any) -> str:
    if v is None:
        return ""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(v))
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        return "must be I/N with 1 <= I <= N, e.g. 2/4 (this job runs the 2nd of 4 shards of the model list)"
    return ""


def _engine(v: Any) -> str:
    return "" if v in (None, "auto", "torch", "onnxruntime") else "must be auto, torch or onnxruntime"


def _stimuli(v: Any) -> str:
    return "" if v is None or v in STIMULI else f"must be one of {', '.join(STIMULI)}"


def _regime(v: Any) -> str:
    return "" if v is None or v in ("block", "per-layer") else "must be block (one jitter per block) or per-layer " \
        "(the papers' table, W5)"


def _positive_float(v: Any) -> str:
    return "" if v is None or (math.isfinite(v) and v > 0) else "must be a finite number > 0"


def _backends(v: Any) -> str:
    bad = [b for b in (v or ()) if b not in ("torch", "onnx")]
    return (f"unknown backend {', '.join(map(str, bad))}: use torch or onnx (an ONNX file runs on onnx; a torch "
            "model can run on both)") if bad else ""


def _device_available(v: Any) -> str:
    """A CUDA/MPS device must exist on this machine (torch is imported only to ask)."""
    if v is None or str(v) == "cpu" or _device(v):
        return ""
    import torch

    if str(v).startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(str(v).partition(":")[2] or 0)
        if index >= n:
            have = "no usable CUDA device" if n == 0 else f"CUDA devices cuda:0 to cuda:{n - 1} only"
            return f"this machine has {have}: use --resstream-device cpu, or run where that GPU is"
    elif str(v) == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine: use --resstream-device cpu"
    return ""


def _providers(v: Any) -> str:
    """onnxruntime execution providers this machine's onnxruntime build has (imported only when some are named)."""
    names = [x for x in str(v or "").split(",") if x.strip()]
    if not names:
        return ""
    from resstream_assert.errors import BackendUnavailable
    from resstream_assert.loading.ort_session import resolve_providers

    try:
        resolve_providers(names)
    except BackendUnavailable as exc:
        return str(exc)
    return ""


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _can_create_in(folder: Path) -> bool:
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".resstream-check-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def _writable_file(v: Any) -> str:
    """A report file: not a directory, and writable (or creatable, with its folders)."""
    if v is None:
        return ""
    p = Path(str(v)).expanduser()
    if p.is_dir():
        return "is a directory: give the path of the file to write (e.g. a name inside that folder)"
    if p.exists():
        try:
            with open(p, "a"):
                pass
        except OSError as exc:
            return f"cannot be written ({exc.strerror}): give a writable path"
        return ""
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        return f"cannot be created: {base} is a file, not a folder; give a path in a folder"
    if not _can_create_in(base):
        return f"cannot be created: the folder {base} is not writable; give a writable path"
    return ""


def _writable_dir(v: Any) -> str:
    """A folder to write into: an existing, writable folder, or one that can be created."""
    if v is None:
        return ""
    p = Path(str(v)).expanduser()
    if p.exists() and not p.is_dir():
        return "is a file, not a folder: give a folder path (it is created if missing)"
    base = p if p.exists() else _nearest_existing(p.parent)
    if not base.is_dir():
        return f"cannot be created: {base} is a file, not a folder; give another folder"
    if not _can_create_in(base):
        return f"is not writable ({base}): give a writable folder"
    return ""


def _probe_dir(v: Any) -> str:
    if v is None or str(v) == "embedded":
        return ""
    p = Path(str(v)).expanduser()
    if not p.exists():
        return "does not exist: give a folder of images (class subfolders or a flat folder), or leave it unset"
    if not p.is_dir():
        return "is a file, not a folder: give the folder that holds the images"
    return ""


@dataclass(frozen=True)
class Option:
    """One option: ``--resstream-NAME`` on the command line, ``resstream_NAME`` (``-`` -> ``_``) in ini files.

    ``kind`` is ``int``, ``float``, ``str``, ``bool`` or ``list`` (repeatable; a linelist in ini).
    """

    name: str
    kind: str
    default: Any
    help: str
    check: Callable[[Any], str] | None = None

    @property
    def dest(self) -> str:
        return "resstream_" + self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("model", "list", None, "model spec to test (repeatable): zoo:NAME, torchvision:ARCH[@WEIGHTS], "
           "timm:ARCH[@WEIGHTS], package.module:factory[@WEIGHTS], path.onnx; suffix +nc-id|+nc-plain|+nc-perm|"
           f"+nc-rand for a negative control. Default: {DEFAULT_MODEL}"),
    Option("backend", "list", None, "capture backend(s): torch, onnx (repeatable; onnx runs a torch model through its "
           "own ONNX export). Default: torch, or onnx for .onnx files", _backends),
    Option("engine", "str", "auto", "what runs a torch model's forward passes (captures, lesions): onnxruntime runs "
           "the model's own ONNX export, about 2.7x faster on CPU; auto = onnxruntime on CPU when the export "
           "reproduces the torch graph's blocks, else torch", _engine),
    Option("providers", "str", "", "onnxruntime execution providers, comma-separated (default: CUDA first when "
           "available)", _providers),
    Option("probe", "str", None, "folder of probe images (ImageFolder-like or flat). Default: the embedded probe set",
           _probe_dir),
    Option("images", "int", 512, "number of probe images", _positive),
    Option("batch-size", "int", 64, "images per forward pass", _positive),
    Option("device", "str", "cpu", "torch device: cpu or cuda[:N]", lambda v: _device(v) or _device_available(v)),
    Option("seed", "int", 0, "seed for permutations, bootstraps and random sets (printed in the header)",
           _non_negative),
    Option("input-size", "int", None, "input size in px (default: the model's own: its card, timm's config, 224 for "
           "torchvision, or read from a factory model's stem, 32 px for a CIFAR-style stem)", _positive),
    Option("label", "list", None, "short name of each --resstream-model in reports, the matrix and test ids "
           "(repeatable, in the order of the models). Default: the spec with paths cut to file names"),
    Option("cache-dir", "str", None, "directory of the on-disk response cache (default: pytest's cache dir)",
           _writable_dir),
    Option("no-cache", "bool", False, "do not read or write the response cache"),
    Option("trust-pickle", "bool", False, "allow loading checkpoints that pickle whole models (runs code from the "
           "file)"),
    Option("shard", "str", None, "run only shard I/N of the model list (models dealt round-robin in the order "
           "given, so every shard is fixed by the list); merge the JSON reports with 'resstream report merge'", _shard),
    Option("list-sites", "bool", False, "print the residual blocks and canonical sites of each model, then exit"),
    # Claim thresholds (see resstream_assert/claims/base.py for how verdicts are decided).
    Option("claims", "str", None, "comma-separated claim ids the suite runs, e.g. C1,C3 (default: all)"),
    Option("alpha", "float", 0.05, "family-wise significance level (Holm across blocks within a claim)", _open_unit),
    Option("mostly", "float", None, "fraction of analysed blocks in which a claim must hold (default: per claim)",
           _fraction),
    Option("min-effect", "float", 0.0, "smallest effect size (|rho|, rank-biserial, ...) that counts as holding",
           _finite_non_negative),
    Option("resamples", "int", 4999, "permutations per permutation test (smallest p = 1/(resamples+1))", _resamples),
    Option("lesion", "list", None, "C10 ablation option KEY=VALUE (repeatable): n_random=200, "
           "blocks=layer3.1,layer2.1, zooms=1,1.5,2, max_images=1024, min_selected=3"),
    Option("stability", "int", 0, "re-evaluate each claim that reads responses only (C1-C9) on N random halves of "
           "the probe images with other seeds, and report how often its verdict flips (unstable above 10 percent; "
           "0 = off)", _non_negative),
    # Stimulus source (DESIGN.md decision 4): dataset exemplars or feature visualizations.
    Option("stimuli", "str", "exemplars", "stimuli of the measures: exemplars (top-9 probe images per channel), "
           "featviz (feature visualizations, the papers' method) or both (claims on each, plus the agreement report)",
           _stimuli),
    Option("channels", "int", None, "featviz: visualise N channels per block, sampled with --resstream-seed "
           "(default: all; claims report how many)", _positive),
    Option("featviz-steps", "int", 256, "featviz: Adam steps per image (the papers: 2560)", _non_negative),
    Option("featviz-lr", "float", 0.05, "featviz: Adam learning rate (the papers: 0.05)", _positive_float),
    Option("featviz-seeds", "int", 1, "featviz: images per channel and site, K (W3; failed seeds are dropped)",
           _positive),
    Option("featviz-regime", "str", "block", "featviz transforms: block (one jitter for I, B and O of a block) or "
           "per-layer (the papers' per-module jitter table, W5)", _regime),
    Option("featviz-jitter", "int", None, "featviz: jitter in px for the block regime (default: the papers' value "
           "for the block's depth: 0, 4 or 16)", _non_negative),
    Option("featviz-size", "int", None, "featviz: image side in px (default: the model's input size)", _positive),
    Option("featviz-device", "str", None, "featviz: device to optimise on (default: --resstream-device)", _device),
    Option("featviz-amp", "bool", False, "featviz: bf16 autocast while optimising (final images are measured in "
           "fp32)"),
    Option("featviz-batch-size", "int", 64, "featviz: images per optimisation chunk", _positive),
    Option("intervention", "list", None, "X1-X4 intervention option KEY=VALUE (repeatable): factors=0.25,0.5,1,2,4, "
           "variants=held,scaled, channels=64, images=512, x3_channels=8, x3_factors=0.5, x3_images=128, "
           "attribution=ig|conductance, n_steps=16, x4_images=64, batch_size=256"),
    Option("survey", "bool", False, "survey a model instead of gating it: a claim that fails is reported as xfailed, "
           "not as a failure (baseline drifts still fail)"),
    # Reports and the baseline gate (logic in resstream_assert/report/).
    Option("report-json", "str", None, "write the JSON report (versions, machine, seed, config, every claim result) "
           "to PATH", _writable_file),
    Option("report-md", "str", None, "write a Markdown report (per-model tables, matrix, baseline diff) to PATH",
           _writable_file),
    Option("report-html", "str", None, "write one self-contained HTML report with the figures to PATH",
           _writable_file),
    Option("report-figures", "str", None, "also write every figure as a PNG file into this folder", _writable_dir),
    Option("baseline", "str", None, "baseline report (JSON) to compare this run with; a drift beyond "
           "--resstream-compare-fail fails the test that recorded it"),
    Option("compare-fail", "list", None, "tolerance EXPR for the baseline gate (repeatable): verdict | missing | "
           "NAME:abs>LIMIT | NAME:pct>LIMIT, e.g. rho:abs>0.1. Default with a baseline: verdict"),
    Option("update-baseline", "bool", False, "write this run's results to --resstream-baseline PATH instead of "
           "comparing"),
)
OPTION = {o.name: o for o in OPTIONS}

_MULTI_LESION_KEYS = ("blocks", "zooms")
_MULTI_INTERVENTION_KEYS = ("factors", "variants", "x3_factors")


def _key_values(flag: str, items: list[str], multi: tuple[str, ...]) -> dict:
    """``["a=1", "b=x,y"]`` -> ``{"a": 1, "b": ("x", "y")}`` for the keys in ``multi`` (numbers parsed)."""
    out: dict = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        values = [int(p) if p.lstrip("-").isdigit() else (float(p) if _is_float(p) else p) for p in parts]
        out[key] = tuple(values) if key in multi else (values[0] if values else None)
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_intervention_options(items: list[str]) -> dict:
    """``["channels=32", "factors=0.5,1,2"]`` -> ``{"channels": 32, "factors": (0.5, 1, 2)}``, validated.

    Example:
        >>> parse_intervention_options(["channels=32", "variants=held"])
        {'channels': 32, 'variants': ('held',)}
    """
    if not items:
        return {}
    from resstream_assert.interventions.options import InterventionOptions

    out = _key_values("--resstream-intervention", items, _MULTI_INTERVENTION_KEYS)
    try:
        InterventionOptions.from_mapping(out).check()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--resstream-intervention: {exc}") from None
    return out


def parse_lesion_options(items: list[str]) -> dict:
    """``["n_random=200", "blocks=layer3.1"]`` -> ``{"n_random": 200, "blocks": ("layer3.1",)}``, validated.

    Example:
        >>> parse_lesion_options(["n_random=20", "zooms=1,2"])
        {'n_random': 20, 'zooms': (1, 2)}
    """
    if not items:
        return {}
    from resstream_assert.interventions.lesion import LesionOptions

    out = _key_values("--resstream-lesion", items, _MULTI_LESION_KEYS)
    try:
        LesionOptions.from_mapping(out).check()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--resstream-lesion: {exc}") from None
    return out


def check_value(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` when ``value`` is not acceptable for option ``name``.

    Example:
        >>> check_value("alpha", 2.0)
        Traceback (most recent call last):
        ...
        resstream_assert.config.ConfigError: --resstream-alpha 2.0: must be strictly between 0 and 1 (e.g. 0.05)
    """
    opt = OPTION[name]
    why = opt.check(value) if opt.check is not None else ""
    if why:
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        raise ConfigError(f"--resstream-{name} {shown}: {why}")


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
    claim_options = {"alpha": get("alpha"), "mostly": get("mostly"), "min_effect": get("min-effect"),
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
        backends=tuple(get("backend") or ()), engine=str(get("engine")), providers=providers,
        survey=bool(get("survey")), claim_options=claim_options, claims=claims,
        shard=tuple(int(x) for x in str(get("shard")).split("/")) if get("shard") else None,
        stimuli=str(get("stimuli")), channels=get("channels"),
        featviz={field_: get(name) for name, field_ in FEATVIZ_OPTIONS.items()}, stability=int(get("stability")),
        labels=tuple(get("label") or ()))
