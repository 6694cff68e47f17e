"""The run's state, shared by the plugin's hooks and fixtures: each option's value (command line, then
ini), the checked :class:`~resstream_assert.config.RunConfig`, the models to test and the session's
one :class:`~resstream_assert.pipeline.Pipeline`, kept in the pytest config's stash.

No torch here: the pipeline is imported when it is first built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from resstream_assert.config import OPTION, OPTIONS, ConfigError, RunConfig, build_run_config

if TYPE_CHECKING:
    from resstream_assert.pipeline import ModelRef, Pipeline


def _get(config: pytest.Config, name: str) -> Any:
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
    if _CONFIG not in config.stash:
        try:
            config.stash[_CONFIG] = build_run_config({o.name: _get(config, o.name) for o in OPTIONS})
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[_CONFIG]


def run_config(config: pytest.Config) -> RunConfig:
    """The validated :class:`~resstream_assert.config.RunConfig` of this pytest run."""
    cfg = _checked(config)
    if cfg.cache_dir is None and not _get(config, "no-cache"):  # resolved on first use: it creates a folder
        cache = _get(config, "cache-dir") or (str(config.cache.mkdir("resstream")) if getattr(config, "cache", None)
                                             else None)
        cfg = config.stash[_CONFIG] = cfg.with_(cache_dir=cache)
    return cfg


def register_reports(config: pytest.Config) -> None:
    """Wire the report hooks (collect, baseline gate, terminal summary, files): resstream_assert.report."""
    from resstream_assert.pytest_plugin.reporting import ReportOptions, ReportPlugin  # stdlib + pytest only

    options = ReportOptions(
        json=_get(config, "report-json"), md=_get(config, "report-md"), html=_get(config, "report-html"),
        figures=_get(config, "report-figures"), baseline=_get(config, "baseline"),
        compare_fail=tuple(_get(config, "compare-fail") or ()), update_baseline=bool(_get(config, "update-baseline")),
        allow_probe_size=bool(_get(config, "allow-probe-size")))
    if options.update_baseline and options.baseline:  # the file this run will write: checked now, not at the end
        check = OPTION["report-json"].check
        assert check is not None  # an output option always has its writability check
        why = check(str(Path(config.invocation_params.dir) / options.baseline))
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


def _refs(config: pytest.Config) -> list[ModelRef]:
    from resstream_assert.errors import ModelSpecError
    from resstream_assert.pipeline import model_refs

    try:
        return model_refs(run_config(config))
    except (ModelSpecError, ConfigError) as exc:
        raise pytest.UsageError(f"--resstream-model: {exc}") from None


def _uses_models(config: pytest.Config) -> bool:
    """A run that names models or runs the suite (unrelated projects pay nothing)."""
    return bool(_get(config, "model")) or any("resstream" in str(a) for a in config.args)


def _pipeline(config: pytest.Config) -> Pipeline:
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


_CONFIG = pytest.StashKey[RunConfig]()  # the checked options (the cache folder set on first use)
_PIPELINE = pytest.StashKey["Pipeline"]()
_RUN = pytest.StashKey[Callable[[], "Pipeline"]]()  # this run's entry in resstream_assert.pipeline's current runs
_NOTES = pytest.StashKey[list[str]]()
_MODEL_INFO = pytest.StashKey[list]()  # (label, backend label, model_info entry) of every model, from start-up
