"""The pytest plugin: options, ini keys, fixtures and hook wiring. No logic and no torch here.

Every option (``resstream_assert.config.OPTIONS``) is also an ini key (``resstream_model = ...``
in ``[pytest]``) and is validated at start-up: a bad value stops the run with a usage error
(exit status 4) before any test. The work happens in :class:`resstream_assert.pipeline.Pipeline`;
torch is imported only when a fixture needs it, so installing this plugin never slows an
unrelated project's pytest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resstream_assert.config import OPTION, OPTIONS, ConfigError, RunConfig, build_run_config
from resstream_assert.config.options import METAVARS, help_text

# Failures inside our assertion helpers get pytest's rich assertion rewriting (registered here,
# before any test module imports them, so that `import resstream_assert` never imports pytest).
pytest.register_assert_rewrite("resstream_assert.assertions")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resstream", "residual-stream claims (resstream_assert)")
    for opt in OPTIONS:
        flag = f"--resstream-{opt.name}"
        text = help_text(opt)  # the default named once, in the help; ini keys share it
        arg_help = text.replace("%", "%%")  # argparse formats help with %: "1%" would break --help
        if opt.kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=opt.dest, help=arg_help)
            parser.addini(opt.dest, text, type="bool", default=opt.default)
        elif opt.kind == "list":
            group.addoption(flag, action="append", default=None, dest=opt.dest, metavar=METAVARS[opt.name],
                            help=arg_help)
            parser.addini(opt.dest, text, type="linelist", default=[])
        elif opt.kind == "rgb":  # three numbers after one flag: --resstream-mean 0.4914 0.4822 0.4465
            group.addoption(flag, action="store", nargs=3, type=float, default=None, dest=opt.dest,
                            metavar=("R", "G", "B"), help=arg_help)
            parser.addini(opt.dest, text + " (ini: three numbers, e.g. 0.4914 0.4822 0.4465)", default=None)
        else:
            group.addoption(flag, action="store", default=None, dest=opt.dest,
                            type={"int": int, "float": float}.get(opt.kind, str),
                            metavar=METAVARS[opt.name], help=arg_help)
            parser.addini(opt.dest, text, default=None if opt.default is None else str(opt.default))


def _get(config: pytest.Config, name: str):
    """Command line first, then ini, then ``None`` (the built-in default applies later)."""
    opt = OPTION[name]
    value = config.getoption(opt.dest)
    if value is not None:
        return value
    ini = config.getini(opt.dest)
    if opt.kind == "list":
        return list(ini) or None
    if opt.kind == "bool":
        return bool(ini)
    if ini in (None, ""):
        return None
    if opt.kind == "rgb":  # the check counts and bounds them; here only numbers are read
        try:
            return [float(x) for x in str(ini).replace(",", " ").split()]
        except ValueError:
            raise pytest.UsageError(f"ini key {opt.dest} = {ini!r}: expected three numbers (R G B), e.g. "
                                    f"0.4914 0.4822 0.4465; fix the value in the ini file (or override it with "
                                    f"--resstream-{opt.name})") from None
    try:
        return {"int": int, "float": float}.get(opt.kind, str)(ini)
    except ValueError:
        what = {"int": "a whole number", "float": "a number"}.get(opt.kind, opt.kind)
        raise pytest.UsageError(f"ini key {opt.dest} = {ini!r}: expected {what}; fix the value in the ini file "
                                f"(or override it with --resstream-{opt.name})") from None


def _checked(config: pytest.Config) -> RunConfig:
    """Every option's value checked once (a bad one is a usage error), before the cache folder is known."""
    if not hasattr(config, "_resstream_run_config"):
        try:
            config._resstream_run_config = build_run_config({o.name: _get(config, o.name) for o in OPTIONS})
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config._resstream_run_config


def run_config(config: pytest.Config) -> RunConfig:
    """The validated :class:`~resstream_assert.config.RunConfig` of this pytest run."""
    cfg = _checked(config)
    if cfg.cache_dir is None and not _get(config, "no-cache"):  # resolved on first use: it creates a folder
        cache = _get(config, "cache-dir") or (str(config.cache.mkdir("resstream")) if getattr(config, "cache", None)
                                             else None)
        cfg = config._resstream_run_config = cfg.with_(cache_dir=cache)
    return cfg


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "resstream(**options): claim thresholds for resstream_check in this test "
                            "(alpha, mostly, min_effect, n_resamples, n_boot, min_channels, ...; see ClaimOptions)")
    _checked(config)  # a bad value stops the run here, before any test
    _register_reports(config)
    from resstream_assert.pipeline import enter_run  # no torch: the pipeline is built on first use

    config.stash[_RUN] = enter_run(lambda: _pipeline(config))  # assertion helpers in a test use this run


def pytest_unconfigure(config: pytest.Config) -> None:
    from resstream_assert.pipeline import leave_run

    leave_run(config.stash.get(_RUN, None))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist: under ``-n N`` (``--dist load``) keep each model's tests on one worker, so a model is
    loaded, captured and lesioned once, not once per worker (:mod:`resstream_assert.pytest_plugin.scheduling`)."""
    if config.getvalue("dist") != "load" or not _uses_models(config):
        return None
    from resstream_assert.pytest_plugin.scheduling import ModelScheduling

    return ModelScheduling(config, log, [str(r) for r in _refs(config)])


def _register_reports(config: pytest.Config) -> None:
    """Wire the report hooks (collect, baseline gate, terminal summary, files): resstream_assert.report."""
    from resstream_assert.pytest_plugin.reporting import ReportOptions, ReportPlugin  # stdlib + pytest only

    options = ReportOptions(
        json=_get(config, "report-json"), md=_get(config, "report-md"), html=_get(config, "report-html"),
        figures=_get(config, "report-figures"), baseline=_get(config, "baseline"),
        compare_fail=tuple(_get(config, "compare-fail") or ()), update_baseline=bool(_get(config, "update-baseline")),
        allow_probe_size=bool(_get(config, "allow-probe-size")))
    if options.update_baseline and options.baseline:  # the file this run will write: checked now, not at the end
        why = OPTION["report-json"].check(str(Path(config.invocation_params.dir) / options.baseline))
        if why:
            raise pytest.UsageError(f"--resstream-baseline {options.baseline} (to be written): {why}")
    config.pluginmanager.register(ReportPlugin(config, options, lambda: run_config(config),
                                               models=lambda: config.stash.get(_MODEL_INFO, []),
                                               runs_suite=_runs_suite(config)), "resstream-report")


def _runs_suite(config: pytest.Config) -> bool:
    """A run of the built-in claims suite (``--pyargs resstream_assert.suite``, ``resstream run`` or its path)."""
    suite = str(Path(__file__).parent / "suite")
    return any("resstream_assert.suite" in str(a) or str(Path(str(a).split("::")[0]).resolve()).startswith(suite)
               for a in config.args)


def _refs(config: pytest.Config):
    from resstream_assert.errors import ModelSpecError
    from resstream_assert.pipeline import model_refs

    try:
        return model_refs(run_config(config))
    except (ModelSpecError, ConfigError) as exc:
        raise pytest.UsageError(f"--resstream-model: {exc}") from None


def _uses_models(config: pytest.Config) -> bool:
    """A run that names models or runs the suite (unrelated projects pay nothing)."""
    return bool(_get(config, "model")) or any("resstream" in str(a) for a in config.args)


def _pipeline(config: pytest.Config):
    """The session's one :class:`~resstream_assert.pipeline.Pipeline` (start-up checks and fixtures share it)."""
    pipe = config.stash.get(_PIPELINE, None)
    if pipe is None:
        from resstream_assert.pipeline import Pipeline

        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        log = None
        if reporter is not None and capman is not None and not hasattr(config, "workerinput") \
                and config.get_verbosity() >= 0:
            from resstream_assert.pytest_plugin.progress import ProgressLog

            log = ProgressLog(reporter, capman)  # long captures: tell the user what is happening
            config.pluginmanager.register(log, "resstream-progress")
        pipe = config.stash[_PIPELINE] = Pipeline(run_config(config), log=log)
    return pipe


_PIPELINE = pytest.StashKey[object]()
_RUN = pytest.StashKey[object]()  # this run's entry in resstream_assert.pipeline's current runs
_NOTES = pytest.StashKey[list]()
_MODEL_INFO = pytest.StashKey[list]()  # (label, backend label, model_info entry) of every model, from start-up


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Load and discover every model (and read a probe folder) before any test: a bad model, weights file
    or image is a usage error (exit status 4) with nothing run and no report written. Controller only;
    a serial run's tests reuse what was loaded."""
    config = session.config
    if hasattr(config, "workerinput") or not _uses_models(config):
        return
    import warnings

    from resstream_assert.errors import ResstreamError, ResstreamWarning
    from resstream_assert.keys import backend_label
    from resstream_assert.gate.compat import describe_model

    refs, pipe = _refs(config), _pipeline(config)
    info = config.stash[_MODEL_INFO] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResstreamWarning)
        for ref in refs:
            try:
                loaded = pipe.model(ref.spec, ref.backend)
                rmap = pipe.map(ref.spec, ref.backend)  # a network without residual blocks is refused now too
            except ResstreamError as exc:
                raise pytest.UsageError(f"--resstream-model {ref.spec}: {exc}") from None
            try:  # read now: a bad image is refused before any test, and reports name the probe set
                probe = pipe.model_probe(ref.spec, ref.backend)
            except ResstreamError as exc:
                raise pytest.UsageError(f"--resstream-probe {pipe.probe_source(ref.spec)}: {exc}") from None
            info.append((ref.label, backend_label({"backend": ref.backend, "stimuli": ref.stimuli}),
                         describe_model(pipe.config.spec_of(ref.spec).architecture, loaded, rmap, probe)))
    config.stash[_NOTES] = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category,
                                                                                           ResstreamWarning)))
    for w in caught:
        if not issubclass(w.category, ResstreamWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not _uses_models(config):
        return None  # unrelated projects: no header, no cost
    from importlib.metadata import PackageNotFoundError, version

    from resstream_assert.formatting import fnorm

    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"

    cfg, refs = run_config(config), _refs(config)
    lines = [f"resstream_assert {v('resstream_assert')}: torch {v('torch')}, torchvision {v('torchvision')}, "
             f"onnxruntime {v('onnxruntime')}, numpy {v('numpy')}, scipy {v('scipy')}; device {cfg.device}; "
             f"seed {cfg.seed}; images {cfg.images}; models {', '.join(str(r) for r in refs)}"]
    if cfg.stimuli != "exemplars":
        fv = {k: v for k, v in cfg.featviz.items() if v is not None}
        lines.append(f"stimuli {cfg.stimuli}: featviz channels per block {cfg.channels or 'all'}, "
                     + ", ".join(f"{k} {v}" for k, v in fv.items()))
    pipe = config.stash.get(_PIPELINE, None)
    for ref in refs:
        loaded = pipe.loaded(ref.spec, ref.backend) if pipe is not None else None
        if loaded is not None:
            source = loaded.input_size_source
            weights = f"; weights {loaded.weights}" if loaded.weights else ""
            probe = pipe.probe_source(ref.spec) or "embedded"
            resize = "" if probe == "embedded" else f" (resize {cfg.resize}" + \
                (f", class index {Path(cfg.class_index).name})" if cfg.class_index else ")")
            norm = {"mean": loaded.mean, "std": loaded.std, "source": loaded.normalisation_source}
            lines.append(f"resstream model {ref}: input {loaded.input_size}px{f' ({source})' if source else ''}"
                         f"{weights}; probe {probe}{resize}; normalisation: {fnorm(norm)}")
    lines += [f"resstream WARNING: {note}" for note in config.stash.get(_NOTES, [])]
    if any(r.backend == "onnx" for r in refs):  # the providers a session really gets (pitfall 6)
        from resstream_assert.loading.ort_session import provider_report

        lines.append(provider_report(cfg.providers))
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "resstream_ref" in metafunc.fixturenames:
        refs = _refs(metafunc.config)
        metafunc.parametrize("resstream_ref", refs, ids=[str(r) for r in refs], indirect=True, scope="session")
    if "resstream_agreement_ref" in metafunc.fixturenames:  # one per model and backend when both sources run
        refs = [r for r in _refs(metafunc.config) if r.stimuli == "featviz"]
        metafunc.parametrize("resstream_agreement_ref", refs, ids=[str(r) for r in refs], scope="session")


def pytest_ignore_collect(collection_path, config: pytest.Config):
    """The suite's agreement test exists only in runs with ``--resstream-stimuli both``."""
    if collection_path.name == "test_agreement.py" and collection_path.parent.name == "suite" \
            and collection_path.parent.parent.name == "resstream_assert":
        return None if _checked(config).stimuli == "both" else True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = run_config(config).claims
    if wanted is None:
        return
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
    from resstream_assert.report.terminal import print_sites
    from resstream_assert.errors import ResstreamError
    from resstream_assert.pipeline import Pipeline

    try:
        return print_sites(Pipeline(run_config(config)), _refs(config))
    except ResstreamError as exc:
        print(f"error: {exc}")
        return 4


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def resstream_config(pytestconfig: pytest.Config) -> RunConfig:
    """The run's resolved :class:`~resstream_assert.config.RunConfig`."""
    return run_config(pytestconfig)


@pytest.fixture(scope="session")
def resstream_pipeline(resstream_config, pytestconfig):
    """The session's :class:`~resstream_assert.pipeline.Pipeline` (memoized models, captures, claim results)."""
    return _pipeline(pytestconfig)


@pytest.fixture(scope="session")
def resstream_ref(request):
    """The (model spec, backend) of this parametrization; one per ``--resstream-model`` x backend."""
    return request.param


@pytest.fixture(scope="session")
def resstream_model(resstream_pipeline, resstream_ref):
    """The loaded model (:class:`~resstream_assert.loading.LoadedModel`), in eval mode."""
    return resstream_pipeline.model(resstream_ref.spec, resstream_ref.backend)


@pytest.fixture(scope="session")
def resstream_map(resstream_pipeline, resstream_ref):
    """The model's :class:`~resstream_assert.discovery.ResidualMap`."""
    return resstream_pipeline.map(resstream_ref.spec, resstream_ref.backend)


@pytest.fixture(scope="session")
def resstream_probe(resstream_pipeline, resstream_ref):
    """The probe set the model is measured on, at its input size."""
    return resstream_pipeline.model_probe(resstream_ref.spec, resstream_ref.backend)


@pytest.fixture(scope="session")
def resstream_responses(resstream_pipeline, resstream_ref):
    """Responses of every site of every block to the plain probe images (variant ``id``)."""
    return resstream_pipeline.responses(resstream_ref.spec, ("id",), resstream_ref.backend)["id"]


@pytest.fixture(scope="session")
def resstream_claim_results(resstream_pipeline, resstream_ref) -> dict:
    """Claim id -> :class:`~resstream_assert.results.ClaimResult` for this model (evaluated once)."""
    return resstream_pipeline.claim_results(resstream_ref.spec, resstream_ref.backend, stimuli=resstream_ref.stimuli)


@pytest.fixture
def resstream_decide(request, resstream_config):
    """``decide(result) -> Decision``: the gate (:func:`resstream_assert.gate.decide`) for a claim result, with
    this run's survey mode and, when ``--resstream-baseline`` is given, the baseline as the gate."""
    from resstream_assert.gate import decide
    from resstream_assert.pytest_plugin.reporting import BASELINE_DECIDED

    plugin = request.config.pluginmanager.get_plugin("resstream-report")

    def run(result):
        check = plugin.baseline_check(result) if plugin is not None else None
        if check is not None:
            request.node.stash[BASELINE_DECIDED] = True
        return decide(result, survey=resstream_config.survey, baseline=check)

    return run


@pytest.fixture
def resstream_record(request):
    """A function ``record(result)`` that adds a claim result to this run's reports."""
    from resstream_assert.report.collect import record_result

    return lambda result: record_result(request.node, result)


@pytest.fixture
def resstream_check(request, resstream_pipeline, resstream_ref, resstream_config, resstream_record):
    """``check(claim_id, expect="holds", **options) -> ClaimResult``: evaluate one claim with chosen thresholds.

    Options come from ``@pytest.mark.resstream(alpha=..., mostly=..., min_effect=...)`` and the
    call's keyword arguments; the result is recorded for the reports and its verdict asserted.
    """
    from resstream_assert.assertions import assert_claim
    from resstream_assert.claims import ClaimOptions

    marker = request.node.get_closest_marker("resstream")
    marked = dict(marker.kwargs) if marker else {}
    bad = set(marked) - set(ClaimOptions.keys())
    if bad:
        raise pytest.UsageError(f"@pytest.mark.resstream got unknown option(s) {sorted(bad)}; "
                                f"use {ClaimOptions.keys()}")

    def check(claim: str, expect: str = "holds", **options):
        unknown = set(options) - set(ClaimOptions.keys())
        if unknown:
            raise TypeError(f"unknown claim option(s) {sorted(unknown)}; use {ClaimOptions.keys()}")
        opts = ClaimOptions.from_run(resstream_config.claim_options, **{**marked, **options})
        result = resstream_pipeline.evaluate(resstream_ref.spec, resstream_ref.backend, [claim], opts,
                                             stimuli=resstream_ref.stimuli)[claim.upper()]
        resstream_record(result)
        return assert_claim(result, expect)

    return check
