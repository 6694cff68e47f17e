"""A run's settings: every option of the plugin (also an ini key), validated once, at start-up.

``OPTIONS`` is the one table of options (name, type, default, help, check); the pytest
plugin turns it into command-line flags and ini keys, and :func:`build_run_config` turns the
values into a :class:`RunConfig`, refusing any value that could not give an honest result
(an alpha of 2, an unknown claim id, a negative seed, ...) with a :class:`ConfigError` that
says which option and what to do. Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from resstream_assert.errors import ResstreamError

DEFAULT_MODEL = "zoo:resnet18-synth96"


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
    providers: tuple[str, ...] = ()
    progress: bool = True
    survey: bool = False  # report verdicts without failing tests (the suite xfails failing claims)
    claim_options: dict = field(default_factory=dict)
    claims: tuple[str, ...] | None = None  # the claims this run evaluates; None = every registered claim

    def with_(self, **changes) -> "RunConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready form (stored in reports). The cache directory is left out: it is a local
        path, says nothing about the results, and would make committed baselines machine-specific.
        ``claims`` appears only when the run selected some (the results list what ran anyway)."""
        skip = {"cache_dir"} | ({"claims"} if self.claims is None else set())
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k not in skip}


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


def _backends(v: Any) -> str:
    bad = [b for b in (v or ()) if b not in ("torch", "onnx")]
    return f"unknown backend(s) {bad}: use torch or onnx" if bad else ""


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
    Option("providers", "str", "", "onnxruntime execution providers, comma-separated (default: CUDA first when "
           "available)"),
    Option("probe", "str", None, "folder of probe images (ImageFolder-like or flat). Default: the embedded probe set"),
    Option("images", "int", 512, "number of probe images", _positive),
    Option("batch-size", "int", 64, "images per forward pass", _positive),
    Option("device", "str", "cpu", "torch device: cpu or cuda[:N]", _device),
    Option("seed", "int", 0, "seed for permutations, bootstraps and random sets (printed in the header)",
           _non_negative),
    Option("input-size", "int", None, "input size in px (default: the model's own, 224 for torchvision/timm)",
           _positive),
    Option("cache-dir", "str", None, "directory of the on-disk response cache (default: pytest's cache dir)"),
    Option("no-cache", "bool", False, "do not read or write the response cache"),
    Option("trust-pickle", "bool", False, "allow loading checkpoints that pickle whole models (runs code from the "
           "file)"),
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
    Option("intervention", "list", None, "X1-X4 intervention option KEY=VALUE (repeatable): factors=0.25,0.5,1,2,4, "
           "variants=held,scaled, channels=64, images=512, x3_channels=8, x3_factors=0.5, x3_images=128, "
           "attribution=ig|conductance, n_steps=16, x4_images=64, batch_size=256"),
    Option("survey", "bool", False, "survey a model instead of gating it: a claim that fails is reported as xfailed, "
           "not as a failure (baseline drifts still fail)"),
    # Reports and the baseline gate (logic in resstream_assert/report/).
    Option("report-json", "str", None, "write the JSON report (versions, machine, seed, config, every claim result) "
           "to PATH"),
    Option("report-md", "str", None, "write a Markdown report (per-model tables, matrix, baseline diff) to PATH"),
    Option("report-html", "str", None, "write one self-contained HTML report with the figures to PATH"),
    Option("report-figures", "str", None, "also write every figure as a PNG file into this folder"),
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
        raise ConfigError(f"--resstream-{name} {value}: {why}")


def build_run_config(values: Mapping[str, Any], *, cache_dir: str | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from option values (``{name: value}``, ``None`` = unset -> default).

    Example:
        >>> build_run_config({"images": 64, "alpha": 0.01}).claim_options["alpha"]
        0.01
    """
    def get(name: str) -> Any:
        v = values.get(name)
        v = OPTION[name].default if v is None else v
        check_value(name, v)
        return v

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
        backends=tuple(get("backend") or ()), providers=providers, survey=bool(get("survey")),
        claim_options=claim_options, claims=claims)
