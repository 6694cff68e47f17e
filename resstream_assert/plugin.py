"""The pytest plugin: options, ini keys, fixtures and report hooks. No logic and no torch here.

Every option is also an ini key (``resstream_model = ...`` in ``[pytest]``). Heavy work
lives in :mod:`resstream_assert.session`; torch is imported only when a fixture needs it,
so installing this plugin never slows an unrelated project's pytest.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

# name, type, default, help. Type "list" means repeatable on the command line, linelist in ini.
_OPTIONS = [
    ("model", "list", None, "model spec to test (repeatable): zoo:NAME, torchvision:ARCH[@WEIGHTS], "
     "timm:ARCH[@WEIGHTS], package.module:factory[@WEIGHTS], path.onnx; suffix +nc-id|+nc-plain|+nc-perm|"
     "+nc-rand for a negative control. Default: zoo:resnet18-synth96"),
    ("backend", "list", None, "capture backend(s): torch, onnx (repeatable; onnx runs a torch model through its "
     "own ONNX export). Default: torch, or onnx for .onnx files"),
    ("providers", "str", "", "onnxruntime execution providers, comma-separated (default: CUDA first when available)"),
    ("probe", "str", None, "folder of probe images (ImageFolder-like or flat). Default: the embedded probe set"),
    ("images", "int", 512, "number of probe images"),
    ("batch-size", "int", 64, "images per forward pass"),
    ("device", "str", "cpu", "torch device: cpu or cuda[:N]"),
    ("seed", "int", 0, "seed for probe sampling, permutations and bootstraps (printed in the header)"),
    ("input-size", "int", None, "input size in px (default: the model's own, 224 for torchvision/timm)"),
    ("cache-dir", "str", None, "directory of the on-disk response cache (default: pytest's cache dir)"),
    ("no-cache", "bool", False, "do not read or write the response cache"),
    ("trust-pickle", "bool", False, "allow loading checkpoints that pickle whole models (runs code from the file)"),
    ("list-sites", "bool", False, "print the residual blocks and canonical sites of each model, then exit"),
    # Claim thresholds (see resstream_assert/claims/base.py for how verdicts are decided).
    ("claims", "str", None, "comma-separated claim ids the suite runs, e.g. C1,C3 (default: all)"),
    ("alpha", "float", 0.05, "family-wise significance level (Holm across blocks within a claim)"),
    ("mostly", "float", None, "fraction of analysed blocks in which a claim must hold (default: per claim)"),
    ("min-effect", "float", 0.0, "smallest effect size (|rho|, rank-biserial, ...) that counts as holding"),
    ("resamples", "int", 4999, "permutations per permutation test (smallest p = 1/(resamples+1))"),
    ("lesion", "list", None, "C10 ablation option KEY=VALUE (repeatable): n_random=200, blocks=layer3.1,layer2.1, "
     "zooms=1,1.5,2, max_images=1024, min_selected=3"),
    ("survey", "bool", False, "survey a model instead of gating it: a claim that fails is reported as xfailed, "
     "not as a failure (baseline drifts still fail)"),
    # Reports and the baseline gate (logic in resstream_assert/report/).
    ("report-json", "str", None, "write the JSON report (versions, machine, seed, config, every claim result) to PATH"),
    ("report-md", "str", None, "write a Markdown report (per-model tables, matrix, baseline diff) to PATH"),
    ("report-html", "str", None, "write one self-contained HTML report with the figures to PATH"),
    ("report-figures", "str", None, "also write every figure as a PNG file into this folder"),
    ("baseline", "str", None, "baseline report (JSON) to compare this run with; a drift beyond "
     "--resstream-compare-fail fails the test that recorded it"),
    ("compare-fail", "list", None, "tolerance EXPR for the baseline gate (repeatable): verdict | missing | "
     "NAME:abs>LIMIT | NAME:pct>LIMIT, e.g. rho:abs>0.1. Default with a baseline: verdict"),
    ("update-baseline", "bool", False, "write this run's results to --resstream-baseline PATH instead of comparing"),
]


#: Keys accepted by ``@pytest.mark.resstream(...)``; they override the run's claim options.
MARKER_KEYS = ("alpha", "mostly", "min_effect", "n_resamples", "n_boot", "min_channels")


class ModelRef(NamedTuple):
    """One parametrization of the model fixtures: a spec on a backend."""

    spec: str
    backend: str

    def __str__(self) -> str:
        return self.spec if self.backend == "torch" else f"{self.spec}[{self.backend}]"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resstream", "residual-stream claims (resstream_assert)")
    for name, kind, default, text in _OPTIONS:
        dest = "resstream_" + name.replace("-", "_")
        flag = f"--resstream-{name}"
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=dest, help=text)
            parser.addini(dest, text, type="bool", default=default)
        elif kind == "list":
            group.addoption(flag, action="append", default=None, dest=dest, metavar="SPEC", help=text)
            parser.addini(dest, text, type="linelist", default=[])
        else:
            group.addoption(flag, action="store", default=None, dest=dest,
                            type={"int": int, "float": float}.get(kind, str),
                            metavar=name.split("-")[-1].upper(), help=text + f" (default: {default})")
            parser.addini(dest, text, default=None if default is None else str(default))


def _get(config: pytest.Config, name: str):
    """Command line first, then ini, then the built-in default."""
    dest = "resstream_" + name.replace("-", "_")
    value = config.getoption(dest)
    if value is not None:
        return value
    kind, default = next((k, d) for n, k, d, _ in _OPTIONS if n == name)
    ini = config.getini(dest)
    if kind == "list":
        return list(ini) or None
    if kind == "bool":
        return bool(ini)
    if ini in (None, ""):
        return default
    return {"int": int, "float": float}.get(kind, str)(ini)


def run_config(config: pytest.Config):
    """The :class:`~resstream_assert.session.RunConfig` of this pytest run."""
    if not hasattr(config, "_resstream_run_config"):
        from resstream_assert.session import DEFAULT_MODEL, RunConfig

        cache_dir = None
        if not _get(config, "no-cache"):
            cache_dir = _get(config, "cache-dir") or (str(config.cache.mkdir("resstream")) if getattr(config, "cache", None) else None)
        providers = tuple(p for p in (_get(config, "providers") or "").split(",") if p)
        config._resstream_run_config = RunConfig(
            models=tuple(_get(config, "model") or [DEFAULT_MODEL]), probe=_get(config, "probe"),
            images=_get(config, "images"), batch_size=_get(config, "batch-size"), device=_get(config, "device"),
            seed=_get(config, "seed"), input_size=_get(config, "input-size"), cache_dir=cache_dir,
            trust_pickle=_get(config, "trust-pickle"), backends=tuple(_get(config, "backend") or ()),
            providers=providers, survey=bool(_get(config, "survey")), claim_options={
                "alpha": _get(config, "alpha"), "mostly": _get(config, "mostly"),
                "min_effect": _get(config, "min-effect"), "n_resamples": _get(config, "resamples"),
                **_lesion_options(_get(config, "lesion") or [])})
    return config._resstream_run_config


def _lesion_options(items: list[str]) -> dict:
    """``["n_random=200", "blocks=layer3.1"]`` -> ``{"lesion_n_random": 200, "lesion_blocks": ("layer3.1",)}``."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--resstream-lesion expects KEY=VALUE, got {item!r}")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        values = [int(p) if p.lstrip("-").isdigit() else (float(p) if p.replace(".", "", 1).isdigit() else p)
                  for p in parts]
        multi = key.strip() in ("blocks", "zooms", "claims")
        out[f"lesion_{key.strip()}"] = tuple(values) if multi else (values[0] if values else None)
    if out:  # fail at start-up, not in the middle of the run
        from resstream_assert.capture.lesion import LesionOptions

        try:
            LesionOptions.from_mapping(out)
        except (TypeError, ValueError) as exc:
            raise pytest.UsageError(f"--resstream-lesion: {exc}") from None
    return out


def model_refs(config: pytest.Config) -> list[ModelRef]:
    """Every (model, backend) pair the run parametrizes over."""
    cfg = run_config(config)
    refs = []
    for spec in cfg.models:
        backends = cfg.backends or (("onnx",) if spec.split("+")[0].lower().endswith(".onnx") else ("torch",))
        refs += [ModelRef(spec, b) for b in backends]
    return refs


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "resstream(**options): claim options for resstream_check in this test: "
                            + ", ".join(MARKER_KEYS))
    _register_reports(config)
    n = _get(config, "images")
    if n is not None and int(n) < 1:
        raise pytest.UsageError("--resstream-images must be a positive number of images")
    _lesion_options(_get(config, "lesion") or [])  # a bad KEY=VALUE stops the run here, before any test


def _register_reports(config: pytest.Config) -> None:
    """Wire the report hooks (collect, baseline gate, terminal summary, files): resstream_assert.report.hooks."""
    from resstream_assert.report.hooks import ReportOptions, ReportPlugin  # stdlib + pytest only

    options = ReportOptions(
        json=_get(config, "report-json"), md=_get(config, "report-md"), html=_get(config, "report-html"),
        figures=_get(config, "report-figures"), baseline=_get(config, "baseline"),
        compare_fail=tuple(_get(config, "compare-fail") or ()), update_baseline=bool(_get(config, "update-baseline")))
    config.pluginmanager.register(ReportPlugin(config, options, lambda: run_config(config)), "resstream-report")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not (_get(config, "model") or any("resstream" in str(a) for a in config.args)):
        return None  # unrelated projects: no header, no cost
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"

    cfg = run_config(config)
    lines = [f"resstream_assert {v('resstream_assert')}: torch {v('torch')}, torchvision {v('torchvision')}, "
             f"onnxruntime {v('onnxruntime')}, numpy {v('numpy')}, scipy {v('scipy')}; device {cfg.device}; "
             f"seed {cfg.seed}; images {cfg.images}; models {', '.join(str(r) for r in model_refs(config))}"]
    if any(r.backend == "onnx" for r in model_refs(config)):  # the providers a session really gets (pitfall 6)
        from resstream_assert.capture.onnx_runtime import provider_report

        lines.append(provider_report(cfg.providers))
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "resstream_ref" in metafunc.fixturenames:
        refs = model_refs(metafunc.config)
        metafunc.parametrize("resstream_ref", refs, ids=[str(r) for r in refs], indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = _get(config, "claims")
    if not text:
        return
    wanted = {c.strip().upper() for c in text.split(",") if c.strip()}
    keep, drop = [], []
    for item in items:
        claim = getattr(getattr(item, "callspec", None), "params", {}).get("claim")
        (drop if claim is not None and claim not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_cmdline_main(config: pytest.Config):
    if not config.getoption("resstream_list_sites"):
        return None
    from resstream_assert.errors import ResstreamError
    from resstream_assert.session import Workbench

    wb = Workbench(run_config(config))
    try:
        for ref in model_refs(config):
            print(wb.map(ref.spec, ref.backend).table(), end="\n\n")
    except ResstreamError as exc:
        print(f"error: {exc}")
        return 4
    return 0


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def resstream_config(pytestconfig: pytest.Config):
    """The run's resolved :class:`~resstream_assert.session.RunConfig`."""
    return run_config(pytestconfig)


@pytest.fixture(scope="session")
def resstream_workbench(resstream_config, pytestconfig):
    """The session's :class:`~resstream_assert.session.Workbench` (memoized models and captures)."""
    from resstream_assert.session import Workbench

    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capman = pytestconfig.pluginmanager.get_plugin("capturemanager")
    log = None
    if reporter is not None and capman is not None and not hasattr(pytestconfig, "workerinput") \
            and pytestconfig.get_verbosity() >= 0:
        def log(line: str) -> None:  # long captures: tell the user what is happening, past pytest's capture
            with capman.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(line)
    return Workbench(resstream_config, log=log)


@pytest.fixture(scope="session")
def resstream_ref(request) -> ModelRef:
    """The (model spec, backend) of this parametrization; one per ``--resstream-model`` x backend."""
    return request.param


@pytest.fixture(scope="session")
def resstream_model(resstream_workbench, resstream_ref):
    """The loaded model (:class:`~resstream_assert.loading.LoadedModel`), in eval mode."""
    return resstream_workbench.model(resstream_ref.spec, resstream_ref.backend)


@pytest.fixture(scope="session")
def resstream_map(resstream_workbench, resstream_ref):
    """The model's :class:`~resstream_assert.discovery.ResidualMap`."""
    return resstream_workbench.map(resstream_ref.spec, resstream_ref.backend)


@pytest.fixture(scope="session")
def resstream_probe(resstream_workbench, resstream_model):
    """The probe set at the model's input size."""
    return resstream_workbench.probe(resstream_model.input_size)


@pytest.fixture(scope="session")
def resstream_selected_claims(resstream_config, pytestconfig) -> tuple[str, ...]:
    """Claim ids this run evaluates (``--resstream-claims``; default: every registered claim)."""
    from resstream_assert.api import resolve_claims

    text = _get(pytestconfig, "claims")
    try:
        return tuple(resolve_claims(text.split(",") if text else None))
    except ValueError as exc:
        raise pytest.UsageError(f"--resstream-claims: {exc}") from None


@pytest.fixture(scope="session")
def resstream_claim_results(resstream_workbench, resstream_ref, resstream_selected_claims) -> dict:
    """Claim id -> :class:`~resstream_assert.results.ClaimResult` for this model (evaluated once)."""
    return resstream_workbench.claim_results(resstream_ref.spec, resstream_ref.backend, resstream_selected_claims)


@pytest.fixture
def resstream_check(request, resstream_workbench, resstream_ref, resstream_config):
    """``check(claim_id, expect="holds", **options) -> ClaimResult``: evaluate one claim with chosen thresholds.

    Options come from ``@pytest.mark.resstream(alpha=..., mostly=..., min_effect=...)`` and the
    call's keyword arguments; the result is recorded for the reports and its verdict asserted.
    """
    from resstream_assert.api import evaluate
    from resstream_assert.assertions import assert_claim
    from resstream_assert.claims import ClaimOptions

    marker = request.node.get_closest_marker("resstream")
    marked = dict(marker.kwargs) if marker else {}
    bad = set(marked) - set(MARKER_KEYS)
    if bad:
        raise pytest.UsageError(f"@pytest.mark.resstream got unknown option(s) {sorted(bad)}; use {MARKER_KEYS}")

    def check(claim: str, expect: str = "holds", **options):
        unknown = set(options) - set(MARKER_KEYS)
        if unknown:
            raise TypeError(f"unknown claim option(s) {sorted(unknown)}; use {MARKER_KEYS}")
        opts = ClaimOptions.from_run(resstream_config.claim_options, **{**marked, **options})
        result = evaluate(resstream_workbench, resstream_ref.spec, resstream_ref.backend, [claim], opts)[claim.upper()]
        record_result(request.node, result)
        return assert_claim(result, expect)

    return check


@pytest.fixture(scope="session")
def resstream_responses(resstream_workbench, resstream_ref):
    """Responses of every site of every block to the plain probe images (variant ``id``)."""
    return resstream_workbench.responses(resstream_ref.spec, ("id",), resstream_ref.backend)["id"]


#: Key under which claim results travel in ``item.user_properties`` (serialized across xdist workers).
RESULT_PROPERTY = "resstream_claim"


def record_result(node, result) -> None:
    """Attach a :class:`~resstream_assert.results.ClaimResult` to a test item, for the reports.

    ``user_properties`` is sent from xdist workers to the controller with each report, so the
    controller sees every result exactly once, whichever worker ran the test.
    """
    node.user_properties.append((RESULT_PROPERTY, result.to_dict()))


@pytest.fixture
def resstream_record(request):
    """A function ``record(result)`` that adds a claim result to this run's reports."""
    return lambda result: record_result(request.node, result)
