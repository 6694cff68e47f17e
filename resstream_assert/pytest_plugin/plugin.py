"""The pytest plugin: options, ini keys, fixtures and hook wiring. No logic and no torch here.

The run's state the hooks share (option values, the checked config, the models, the pipeline) is
:mod:`.run_state`; the report header's lines are :mod:`.header`.

Every option (``resstream_assert.config.OPTIONS``) is also an ini key (``resstream_model = ...``
in ``[pytest]``) and is validated at start-up: a bad value stops the run with a usage error
(exit status 4) before any test. The work happens in :class:`resstream_assert.pipeline.Pipeline`;
torch is imported only when a fixture needs it, so installing this plugin never slows an
unrelated project's pytest.
"""

from __future__ import annotations

import pytest

from resstream_assert.config import OPTIONS, RunConfig
from resstream_assert.config.options import METAVARS, help_text
from resstream_assert.pytest_plugin.header import report_header
from resstream_assert.pytest_plugin.run_state import (_MODEL_INFO, _NOTES, _RUN, _checked, _pipeline, _refs,
                                                      _uses_models, register_reports, run_config)

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "resstream(**options): claim thresholds for resstream_check in this test "
                            "(alpha, mostly, min_effect, n_resamples, n_boot, min_channels, ...; see ClaimOptions)")
    _checked(config)  # a bad value stops the run here, before any test
    register_reports(config)
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
    info: list = []
    config.stash[_MODEL_INFO] = info
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
    return report_header(config)


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
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
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
