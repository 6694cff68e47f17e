"""The one table of options (name, type, default, help, check) and the parsers of the KEY=VALUE ones.

The pytest plugin turns :data:`OPTIONS` into command-line flags and ini keys; a value is
checked by its option's check (:mod:`.checks`) before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from resstream_assert.config import checks
from resstream_assert.errors import ConfigError

if TYPE_CHECKING:  # for the annotation only: the parsers below import them where they are used
    from resstream_assert.interventions.lesion import LesionOptions
    from resstream_assert.interventions.settings import InterventionOptions

DEFAULT_MODEL = "zoo:resnet18-cifar64"  # trained on CIFAR-10 photographs, tested on its shipped probe
#: featviz option name -> FeatvizSettings field (see resstream_assert/interventions/featviz.py).
FEATVIZ_OPTIONS = {"featviz-steps": "steps", "featviz-lr": "lr", "featviz-seeds": "seeds",
                   "featviz-regime": "regime", "featviz-jitter": "jitter", "featviz-size": "size",
                   "featviz-device": "device", "featviz-amp": "amp", "featviz-batch-size": "batch_size",
                   "featviz-plateau": "plateau"}


@dataclass(frozen=True)
class Option:
    """One option: ``--resstream-NAME`` on the command line, ``resstream_NAME`` (``-`` -> ``_``) in ini files.

    ``kind`` is ``int``, ``float``, ``str``, ``bool``, ``list`` (repeatable; a linelist in ini) or ``rgb``
    (three numbers after one flag, one per colour channel; space- or comma-separated in ini).
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
           "own ONNX export). Default: torch, or onnx for .onnx files", checks.backends),
    Option("engine", "str", "auto", "what runs a torch model's forward passes (captures, lesions): onnxruntime runs "
           "the model's own ONNX export, about 2.7x faster on CPU; auto = onnxruntime on CPU when the export "
           "reproduces the torch graph's blocks, else torch", checks.engine),
    Option("storage", "str", "auto", "how captured responses are kept in memory and in the cache: auto (the "
           "untransformed responses, which pick the exemplars and M, in float32; every transformed variant in "
           "float16: M exact, every verdict of the zoo models unchanged), float16 (all: for very large probes; "
           "near-tied exemplars may reorder) or float32", checks.storage),
    Option("providers", "str", "", "onnxruntime execution providers, comma-separated (default: CUDA first when "
           "available)", checks.providers),
    Option("probe", "str", None, "probe images: a folder (ImageFolder-like or flat), embedded (synthetic shapes) or "
           "cifar10 (1,000 CIFAR-10 test photographs shipped with the package). Default: the model's own (a zoo model "
           "names its probe set), else embedded", checks.probe_dir),
    Option("images", "int", 512, "number of probe images", checks.positive),
    Option("batch-size", "int", 64, "images per forward pass", checks.positive),
    Option("device", "str", "cpu", "torch device: cpu or cuda[:N]",
           lambda v: checks.device(v) or checks.device_available(v)),
    Option("seed", "int", 0, "seed for permutations, bootstraps and random sets (printed in the header)",
           checks.non_negative),
    Option("input-size", "int", None, "input size in px (default: the model's own: its card, timm's config, 224 for "
           "torchvision, or read from a factory model's stem, 32 px for a CIFAR-style stem)", checks.positive),
    # Preprocessing (README "Preprocessing"): what a model's inputs were normalised with, how photographs are
    # brought to its square input, and how class folders map to its outputs.
    Option("mean", "rgb", None, "the model's input normalisation: per-channel mean R G B of images in [0, 1], e.g. "
           "0.4914 0.4822 0.4465 (CIFAR-10); give --resstream-std with it. Default: the zoo card's for zoo models, "
           "the file's metadata for an ONNX file written by 'resstream export', else ImageNet's "
           "(0.485 0.456 0.406)", checks.norm_mean),
    Option("std", "rgb", None, "the model's input normalisation: per-channel standard deviation R G B, e.g. "
           "0.2470 0.2435 0.2616 (CIFAR-10); give --resstream-mean with it. Default: as for --resstream-mean "
           "(ImageNet's: 0.229 0.224 0.225)", checks.norm_std),
    Option("resize", "str", "crop", "how probe photographs (a folder or a shipped set) are brought to the square "
           "input: crop (shorter side to the input size, then the centre square, as torchvision's eval "
           "transforms) or stretch (the whole image resized, aspect ratio lost)", checks.resize),
    Option("class-index", "str", None, "JSON file mapping the model's class indices to class folder names, like "
           "torchvision's imagenet_class_index.json: {\"0\": [\"n01440764\", \"tench\"], ...}; each class folder "
           "of the probe is labelled with its index. Needed for C10 on a folder with some of an ImageNet model's "
           "classes (WordNet-id folders); without it labels are the folders' sorted order", checks.class_index),
    Option("label", "list", None, "short name of each --resstream-model in reports, the matrix and test ids "
           "(repeatable, in the order of the models). Default: the spec with paths cut to file names"),
    Option("cache-dir", "str", None, "directory of the on-disk response cache (default: pytest's cache dir)",
           checks.writable_dir),
    Option("no-cache", "bool", False, "do not read or write the response cache"),
    Option("trust-pickle", "bool", False, "allow loading checkpoints that pickle whole models (runs code from the "
           "file)"),
    Option("safe-globals", "list", None, "a class a checkpoint may hold besides tensors, as module.Class "
           "(repeatable), e.g. argparse.Namespace in a Lightning checkpoint's hyper-parameters: the safe loader "
           "builds it too (torch.serialization.add_safe_globals); no other code runs", checks.class_names),
    Option("shard", "str", None, "run only shard I/N of the model list (models dealt round-robin in the order "
           "given, so every shard is fixed by the list); merge the JSON reports with 'resstream report merge'",
           checks.shard),
    Option("list-sites", "bool", False, "print the residual blocks and canonical sites of each model, then exit"),
    # Claim thresholds (see resstream_assert/claims/base.py for how verdicts are decided).
    Option("claims", "str", None, "comma-separated claim ids the suite runs, e.g. C1,C3 (default: all)",
           checks.claims),
    Option("alpha", "float", 0.05, "family-wise significance level (Holm across blocks within a claim)",
           checks.open_unit),
    Option("mostly", "float", None, "fraction of analysed blocks in which a claim must hold (default: per claim)",
           checks.fraction),
    Option("min-effect", "list", None, "a claim's minimum effect CLAIM=VALUE in its own units (repeatable), e.g. "
           "C3=0.2: rho must lie below -0.2 to hold and above it to fail; the verdict compares the effect's interval "
           "with it. Default: each claim's own (the claims page lists them)", checks.min_effects),
    Option("resamples", "int", 4999, "permutations per permutation test (smallest p = 1/(resamples+1))",
           checks.resamples),
    Option("lesion", "list", None, "C10 ablation option KEY=VALUE (repeatable): n_random=40, "
           "blocks=layer2.1,layer3.1, zooms=1,2 (or 1,1.25,1.5,2), max_images=512, min_selected=3, "
           "sequential=2, precision=fp32|bf16"),
    Option("stability", "int", 0, "re-evaluate each claim that reads responses only (C1-C9) on N random halves of "
           "the probe images with other seeds, and report how often its verdict flips (unstable above 10 percent; "
           "0 = off; else 36 to 1000, enough for 0 flips to show a verdict stable)", checks.stability),
    # Stimulus source (DESIGN.md decision 4): dataset exemplars or feature visualizations.
    Option("stimuli", "str", "exemplars", "stimuli of the measures: exemplars (top-9 probe images per channel), "
           "featviz (feature visualizations, the papers' method) or both (claims on each, plus the agreement report)",
           checks.stimuli),
    Option("channels", "int", None, "featviz: visualise N channels per block, sampled with --resstream-seed "
           "(default: all; claims report how many)", checks.positive),
    Option("featviz-steps", "int", 256, "featviz: Adam steps per image (the papers: 2560)", checks.non_negative),
    Option("featviz-lr", "float", 0.05, "featviz: Adam learning rate (the papers: 0.05)", checks.positive_float),
    Option("featviz-seeds", "int", 1, "featviz: images per channel and site (seeds whose image fails its success check are dropped)",
           checks.positive),
    Option("featviz-regime", "str", "block", "featviz transforms: block (one jitter for I, B and O of a block) or "
           "per-layer (the papers' per-module jitter table)", checks.regime),
    Option("featviz-jitter", "int", None, "featviz: jitter in px for the block regime (default: the papers' value "
           "for the block's depth: 0, 4 or 16)", checks.non_negative),
    Option("featviz-size", "int", None, "featviz: image side in px, 8 to 1024 (default: the model's input size)",
           checks.featviz_size),
    Option("featviz-device", "str", None, "featviz: device to optimise on (default: --resstream-device)",
           checks.device),
    Option("featviz-amp", "bool", False, "featviz: bf16 autocast while optimising (final images are measured in "
           "fp32)"),
    Option("featviz-batch-size", "int", 64, "featviz: images per optimisation chunk", checks.positive),
    Option("featviz-plateau", "int", 0, "featviz: early stop (0: off): an image stops once its objective's mean "
           "over its last N steps gained <= 1% over the N before; reported as fz_plateau / fz_steps_run_mean",
           checks.non_negative),
    Option("intervention", "list", None, "X1-X4 intervention option KEY=VALUE (repeatable): factors=F1,F2,... "
           "(default: 7 log-spaced from 0.25 to 4), variants=held,scaled, channels=64, images=512, x3_channels=8, "
           "x3_factors=0.5, x3_images=128, attribution=ig|conductance, n_steps=16, x4_images=64, batch_size=256"),
    Option("survey", "bool", False, "survey a model instead of gating it: a claim that fails is reported as xfailed, "
           "not as a failure (baseline drifts still fail)"),
    # Reports and the baseline gate (logic in resstream_assert/report/).
    Option("report-json", "str", None, "write the JSON report (versions, machine, seed, config, every claim result) "
           "to PATH", checks.writable_file),
    Option("report-md", "str", None, "write a Markdown report (per-model tables, matrix, baseline diff) to PATH",
           checks.writable_file),
    Option("report-html", "str", None, "write one self-contained HTML report with the figures to PATH",
           checks.writable_file),
    Option("report-figures", "str", None, "also write every figure as a PNG file into this folder",
           checks.writable_dir),
    Option("baseline", "str", None, "baseline report (JSON) to compare this run with; a drift beyond "
           "--resstream-compare-fail fails the test that recorded it"),
    Option("compare-fail", "list", None, "tolerance EXPR for the baseline gate (repeatable): verdict | missing | "
           "decided | NAME:abs>LIMIT | NAME:pct>LIMIT | effect:ci>LIMIT, e.g. rho:abs>0.1; decided fails a claim "
           "the baseline decided and this run cannot. Default with a baseline: verdict"),
    Option("update-baseline", "bool", False, "write this run's results to --resstream-baseline PATH instead of "
           "comparing (refused when a test failed or errored, a model has no results, or nothing was decided)"),
    Option("allow-probe-size", "bool", False, "compare with a baseline made at another number of probe images "
           "(--resstream-images); stated in the comparison. Any other difference of model or settings is refused"),
)
OPTION = {o.name: o for o in OPTIONS}

#: What each option's value looks like in ``--help`` (``--resstream-images=N``); flags have none.
METAVARS = {
    "model": "SPEC", "backend": "torch|onnx", "engine": "auto|torch|onnxruntime", "providers": "PROVIDERS",
    "probe": "DIR|embedded|cifar10", "images": "N", "batch-size": "N", "device": "cpu|cuda[:N]", "seed": "N",
    "input-size": "PX", "label": "LABEL", "cache-dir": "DIR", "safe-globals": "MODULE.CLASS", "shard": "I/N",
    "claims": "C1,C3,...", "alpha": "ALPHA", "mostly": "FRACTION", "min-effect": "CLAIM=VALUE",
    "resamples": "N", "lesion": "KEY=VALUE", "stability": "N", "stimuli": "exemplars|featviz|both",
    "channels": "N", "featviz-steps": "N", "featviz-lr": "LR", "featviz-seeds": "K",
    "featviz-regime": "block|per-layer", "featviz-jitter": "PX", "featviz-size": "PX",
    "featviz-device": "cpu|cuda[:N]", "featviz-batch-size": "N", "featviz-plateau": "N",
    "intervention": "KEY=VALUE", "report-json": "PATH", "report-md": "PATH", "report-html": "PATH",
    "report-figures": "DIR", "baseline": "PATH", "compare-fail": "EXPR", "storage": "auto|float16|float32",
    "mean": "R G B", "std": "R G B", "resize": "crop|stretch", "class-index": "JSON",
}


def help_text(opt: Option) -> str:
    """An option's help as ``--help`` shows it: its text with its default named once (a text that names its
    default itself, or an option without one, gets nothing added).

    Example:
        >>> help_text(OPTION["images"])
        'number of probe images (default: 512)'
        >>> help_text(OPTION["input-size"]).count("default"), help_text(OPTION["seed"])[-12:]
        (1, '(default: 0)')
    """
    if "default" in opt.help.lower() or opt.default is None or opt.default == "" or opt.kind == "bool":
        return opt.help
    return f"{opt.help} (default: {opt.default})"

#: Where each option's value lives in a ``RunConfig`` (``claim_options.alpha``: a key of a dict field), so a
#: RunConfig built in Python is checked by the same checks as the options (``RunConfig.__post_init__``).
#: Options absent here (reports, the baseline, list-sites, no-cache) are not part of a RunConfig.
RUN_FIELDS = {
    "model": "models", "backend": "backends", "engine": "engine", "providers": "providers", "probe": "probe",
    "images": "images", "batch-size": "batch_size", "device": "device", "seed": "seed", "input-size": "input_size",
    "mean": "mean", "std": "std", "resize": "resize", "class-index": "class_index",
    "label": "labels", "cache-dir": "cache_dir", "trust-pickle": "trust_pickle", "shard": "shard",
    "safe-globals": "safe_globals",
    "claims": "claims", "alpha": "claim_options.alpha", "mostly": "claim_options.mostly",
    "min-effect": "claim_options.min_effect", "resamples": "claim_options.n_resamples",
    "lesion": "claim_options.lesion", "intervention": "claim_options.intervention", "stability": "stability",
    "stimuli": "stimuli", "channels": "channels", "survey": "survey",
    **{name: f"featviz.{field_}" for name, field_ in FEATVIZ_OPTIONS.items()},
}

_MULTI_LESION_KEYS = ("blocks", "zooms")
_MULTI_INTERVENTION_KEYS = ("factors", "variants", "x3_factors")


def _key_values(flag: str, items: list[str], multi: tuple[str, ...],
                options: type[InterventionOptions] | type[LesionOptions]) -> dict:
    """``["a=1", "b=x,y"]`` -> ``{"a": 1, "b": ("x", "y")}`` for the keys in ``multi`` (numbers parsed),
    checked by ``options.from_mapping(...).check()`` (a ValueError or TypeError there is a ConfigError)."""
    out: dict = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        values = [int(p) if p.lstrip("-").isdigit() else (float(p) if _is_float(p) else p) for p in parts]
        out[key] = tuple(values) if key in multi else (values[0] if values else None)
    try:
        options.from_mapping(out).check()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{flag}: {exc}") from None
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
    from resstream_assert.interventions.settings import InterventionOptions

    return _key_values("--resstream-intervention", items, _MULTI_INTERVENTION_KEYS, InterventionOptions)


def parse_lesion_options(items: list[str]) -> dict:
    """``["n_random=200", "blocks=layer3.1"]`` -> ``{"n_random": 200, "blocks": ("layer3.1",)}``, validated.

    Example:
        >>> parse_lesion_options(["n_random=20", "zooms=1,2"])
        {'n_random': 20, 'zooms': (1, 2)}
    """
    if not items:
        return {}
    from resstream_assert.interventions.lesion import LesionOptions

    return _key_values("--resstream-lesion", items, _MULTI_LESION_KEYS, LesionOptions)


def check_value(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` when ``value`` is not acceptable for option ``name``.

    Example:
        >>> check_value("alpha", 2.0)
        Traceback (most recent call last):
        ...
        resstream_assert.errors.ConfigError: --resstream-alpha 2.0: must be strictly between 0 and 1 (e.g. 0.05)
    """
    opt = OPTION[name]
    why = _wrong_type(opt, value) or (opt.check(value) if opt.check is not None else "")
    if why:
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        raise ConfigError(f"--resstream-{name} {shown}: {why}")


_KINDS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list, tuple),
          "rgb": (list, tuple)}


def _wrong_type(opt: Option, value: Any) -> str:
    """What is wrong with the type of a value given in Python (the command line and ini keys convert theirs)."""
    if value is None:
        return ""
    ok = isinstance(value, _KINDS[opt.kind]) and (opt.kind == "bool" or not isinstance(value, bool))
    if ok and opt.kind == "list":
        ok = all(isinstance(v, str) for v in value)
    if ok and opt.kind == "rgb":
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if ok:
        return ""
    return {"int": "must be a whole number", "float": "must be a number", "str": "must be text",
            "bool": "must be True or False", "list": "must be a list of text values",
            "rgb": "must be 3 numbers (red, green, blue), e.g. (0.4914, 0.4822, 0.4465)"}[opt.kind]
