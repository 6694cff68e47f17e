"""The report and baseline hooks, registered by ``plugin.pytest_configure`` as one plugin object.

How the baseline gate works (and why it is robust under pytest-xdist):

1. **Per test, where the test runs.** ``pytest_runtest_makereport`` wraps the call-phase
   report of every test that recorded a claim result (``resstream_record``). Each process
   (serial run or xdist worker) loads the baseline once and compares that test's results;
   a drift beyond tolerance turns the report into a failure whose message is the diff
   (already-failing tests get the diff as an extra section). This is the same mechanism
   pytest's own xfail handling uses, so JUnit XML, xdist and pytest-html all see an
   ordinary failed test, and claims authors need do nothing but record their results.
2. **Per session, on the controller.** ``pytest_sessionfinish`` compares the combined report
   with the baseline (this catches claims present in the baseline but not run, which no
   test can fail for), stores the diff in the JSON/Markdown/HTML reports and, if the
   comparison fails while every test passed, sets ``session.exitstatus`` to 1 (as syrupy
   does), printing why in the terminal summary.

Report files and ``--resstream-update-baseline`` are written on the controller only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pytest

from resstream_assert.errors import CompareFailError
from resstream_assert.gate.baseline import (BaselineDiff, baseline_from_report, compare, compare_result,
                                            find_baseline_result, pair_models, quantities, unknown_quantities)
from resstream_assert.gate.compat import incompatibilities, refusal
from resstream_assert.gate.rules import gate_rules, parse_rules
from resstream_assert.keys import model_label, pair_of
from resstream_assert.paths import same_file
from resstream_assert.report.collect import RESULT_PROPERTY, ReportCollector, read_report, write_report

__all__ = ["ReportOptions", "ReportPlugin", "BASELINE_DECIDED"]

#: Set on a test item whose outcome :func:`resstream_assert.gate.decide` already took from the baseline.
BASELINE_DECIDED = pytest.StashKey[bool]()


@dataclass(frozen=True)
class ReportOptions:
    """The report and baseline options of a run (resolved by the plugin from CLI and ini)."""

    json: str | None = None
    md: str | None = None
    html: str | None = None
    figures: str | None = None
    baseline: str | None = None
    compare_fail: tuple[str, ...] = ()
    update_baseline: bool = False
    allow_probe_size: bool = False

    def outputs(self) -> list[tuple[str, str]]:
        """(flag, path) of every report file the run writes."""
        return [(f, p) for f, p in (("report-json", self.json), ("report-md", self.md), ("report-html", self.html))
                if p]


#: One model of the run on one backend: (label, backend label, its ``model_info`` entry).
ModelInfo = tuple[str, str, Mapping[str, Any]]


class ReportPlugin:
    """Collects results (controller), gates on the baseline (every process), writes reports.

    ``run_config`` returns the run's ``RunConfig`` (resolved lazily: it may create pytest's
    cache folder, which an unrelated project's run must not pay for). ``models`` returns the run's
    models as loaded at start-up (:data:`ModelInfo`; none in a run without models); ``runs_suite``
    says the run is the built-in claims suite, which must decide something even when it recorded nothing.
    """

    def __init__(self, config: pytest.Config, options: ReportOptions, run_config: Callable[[], Any],
                 models: Callable[[], Sequence[ModelInfo]] = lambda: (), runs_suite: bool = False) -> None:
        self.config = config
        self.options = options
        self._run_config = run_config
        self._models = models
        self.runs_suite = runs_suite
        self.is_worker = hasattr(config, "workerinput")
        # Parsed first: a malformed tolerance is named as such even when the baseline is missing too.
        try:
            self.rules = gate_rules(options.compare_fail) if options.baseline else parse_rules(options.compare_fail)
        except CompareFailError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.root = Path(config.invocation_params.dir)
        self.baseline: dict[str, Any] | None = None
        if options.update_baseline and not options.baseline:
            raise pytest.UsageError("--resstream-update-baseline needs --resstream-baseline PATH (the file to write)")
        if options.compare_fail and not options.baseline:
            raise pytest.UsageError(f"--resstream-compare-fail {' '.join(options.compare_fail)}: a tolerance needs a "
                                    "baseline to compare with; add --resstream-baseline PATH (create it once with "
                                    "--resstream-update-baseline)")
        if options.baseline:
            for flag, value in options.outputs():
                if same_file(self._path(value), self._path(options.baseline)):
                    raise pytest.UsageError(
                        f"--resstream-{flag} {value}: is the baseline file (--resstream-baseline {options.baseline}; "
                        "symlinks followed). Writing the report there would overwrite the baseline, and the next "
                        "run would be compared with this one instead. Give the report another path.")
        if options.baseline and not options.update_baseline:
            self.baseline = self._read_baseline(options.baseline)
            unknown = unknown_quantities(self.rules, self.baseline)
            if unknown:
                known = ", ".join(sorted(quantities(self.baseline)))
                raise pytest.UsageError(f"--resstream-compare-fail: no claim or block in the baseline "
                                        f"{options.baseline} has the quantity {', '.join(map(repr, unknown))}, so the "
                                        f"rule would compare nothing. Use one of: {known}")
        self.collector: ReportCollector | None = None
        self.report: dict[str, Any] | None = None
        self.diff: BaselineDiff | None = None
        self.written: list[str] = []
        self.messages: list[str] = []
        self.notes: list[str] = []  # stated above the baseline comparison (e.g. a probe size allowed)
        self.failures: list[str] = []  # nodeids of tests that failed or errored (controller)
        self._started = time.time()

    def _read_baseline(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        if path.is_dir():
            raise pytest.UsageError(f"--resstream-baseline {name}: is a directory; give the baseline JSON file "
                                    "(written by --resstream-update-baseline)")
        if not path.is_file():
            raise pytest.UsageError(f"--resstream-baseline {name}: no such file; create it with "
                                    "--resstream-update-baseline")
        try:
            return read_report(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise pytest.UsageError(f"--resstream-baseline {name}: {exc}; give a baseline written by "
                                    "--resstream-update-baseline, or write it again") from None

    def baseline_check(self, result: Any) -> Any:
        """What the baseline says about ``result`` (a ClaimResult or its dict): a
        :class:`resstream_assert.gate.BaselineCheck` for :func:`~resstream_assert.gate.decide`, or None without
        a baseline. Runs where the test runs (serial process or xdist worker)."""
        from resstream_assert.gate import BaselineCheck  # imports numpy: only when a claim is gated

        path = self.options.baseline or ""
        if self.options.update_baseline and path:
            return BaselineCheck(path, updating=True)
        if self.baseline is None:
            return None
        d = result if isinstance(result, Mapping) else result.to_dict()
        models = self._run_models()
        base = find_baseline_result(d, self.baseline, run_models=models)
        diff = compare_result(d, self.baseline, self.rules, run_models=models, baseline_path=path)
        text = diff.table() if diff.failed or diff.notable() else ""
        unstable = any(e.status == "unstable" and e.block == "" for e in diff.entries)
        return BaselineCheck(path, None if base is None else str(base.get("verdict")), diff.failed, text,
                             unstable=unstable)

    def _path(self, p: str) -> Path:
        # Relative paths are relative to where pytest was invoked, as for --junitxml.
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.root / path

    def _run_models(self) -> list[str]:
        try:
            return list(self._run_config().model_labels())  # results carry labels, not specs
        except Exception:  # a broken model option is reported elsewhere; the gate still compares
            return []

    # --- every process: the per-test gate --------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        # Skipped tests are gated too: the suite records an inconclusive claim, then skips; a claim
        # that held in the baseline and is inconclusive now is a drift. xfail stays the user's call.
        if self.baseline is None or report.when != "call" or hasattr(report, "wasxfail"):
            return report
        if item.stash.get(BASELINE_DECIDED, False):
            return report  # the test's own outcome came from gate.decide with this baseline (the suite)
        results = [v for k, v in item.user_properties if k == RESULT_PROPERTY and isinstance(v, Mapping)]
        if not results:
            return report
        models = self._run_models()
        diffs = [compare_result(r, self.baseline, self.rules, run_models=models,
                                baseline_path=self.options.baseline or "") for r in results]
        text = "\n\n".join(d.table() for d in diffs if d.failed or d.notable())
        if any(d.failed for d in diffs):
            message = (f"BaselineDriftError: residual-stream statistics drifted from the baseline "
                       f"{self.options.baseline}\n{text}")
            if report.skipped:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                report.outcome, report.longrepr = "failed", f"{message}\n(the test itself skipped: {reason})"
            elif report.passed:
                report.outcome, report.longrepr = "failed", message
            else:
                report.sections.append(("resstream baseline diff", message))
        elif text:
            report.sections.append(("resstream baseline diff", text))
        return report

    # --- controller: collect, compare, write, summarize -------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Refuse a baseline of another model or other settings before any test (after the models loaded)."""
        self._started = time.time()
        if self.is_worker or self.baseline is None:
            return
        models = list(self._models())
        current = {"config": self._config_dict(), "model_info": {model_label(m, b): i for m, b, i in models}}
        pairs = pair_models(self.baseline, [(m, b) for m, b, _ in models])
        problems, self.notes = incompatibilities(self.baseline, current, pairs,
                                                 allow_probe_size=self.options.allow_probe_size)
        if problems:
            raise pytest.UsageError(refusal(problems, self.options.baseline or ""))

    def _config_dict(self) -> dict[str, Any]:
        try:
            return self._run_config().to_dict()
        except Exception as exc:  # a broken model option is reported elsewhere
            return {"error": str(exc)}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.is_worker and report.failed:
            self.failures.append(report.nodeid)
        if self.is_worker or not report.user_properties:
            return
        if self.collector is None:
            if not any(p[0] == RESULT_PROPERTY for p in report.user_properties if len(p) == 2):
                return  # unrelated tests: stay free
            self.collector = self._new_collector()
        self.collector.add_report(report)
        # Runs before junitxml (tryfirst): it writes every user property as a string, and a whole
        # result with its figures would bloat junit.xml. Keep a one-line summary there instead.
        report.user_properties = [
            (k, f"{v.get('claim')} {v.get('verdict')} effect={v.get('effect')} p_adj={v.get('p_adjusted')}")
            if k == RESULT_PROPERTY and isinstance(v, dict) else (k, v) for k, v in report.user_properties]

    def _new_collector(self) -> ReportCollector:
        cfg_dict = self._config_dict()  # keep collecting even if the model options are unusable
        return ReportCollector(config=cfg_dict, seed=cfg_dict.get("seed"), started=self._started)

    def _wanted(self) -> bool:
        o = self.options
        return self.collector is not None or self.runs_suite or any((o.json, o.md, o.html, o.figures, o.baseline))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker or not self._wanted() or self.config.option.collectonly:
            return
        collector = self.collector or self._new_collector()
        report = collector.to_json()
        models = list(self._models())
        if models:
            report["model_info"] = {model_label(m, b): dict(i) for m, b, i in models}
        o = self.options
        if self.baseline is not None:
            self.diff = compare(self.baseline, report, self.rules, baseline_path=o.baseline or "", notes=self.notes)
            report["baseline"] = self.diff.to_dict()
            if self.diff.failed:
                self._fail(session, "resstream: the baseline comparison failed although every test passed (see the "
                                    "table above); exit status set to 1")
        self.report = report
        undecided = self._check_decided(session, report)
        if o.update_baseline and o.baseline:
            self._update_baseline(session, report, models, undecided)
        self._write_files(report)

    def _fail(self, session: pytest.Session, message: str = "") -> None:
        """Fail a run whose tests all passed, saying why (a run that failed already keeps its status)."""
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            if message:
                self.messages.append(message)

    def _check_decided(self, session: pytest.Session, report: Mapping[str, Any]) -> list[str]:
        """:func:`resstream_assert.gate.undecided`: a run that decided nothing fails (survey mode: a loud line)."""
        if not (report["results"] or self.runs_suite):
            return []
        from resstream_assert.gate import undecided

        lines = undecided(report["results"])
        if not lines:
            return []
        survey = bool(report.get("config", {}).get("survey"))
        head = ("resstream: NOTHING WAS DECIDED" + (" (survey mode: the exit status is left as it is)" if survey else
                "; a run that decides nothing checked nothing, so it fails"))
        text = "\n".join([head] + [f"  {line}" for line in lines] + [
            "  More probe images (--resstream-images), other claims (--resstream-claims) or a trained model can "
            "decide them; inconclusive claims say what they lack."])
        self.messages.append(text)
        if not survey:
            self._fail(session)
        return lines

    def _update_baseline(self, session: pytest.Session, report: Mapping[str, Any], models: Sequence[ModelInfo],
                         undecided: Sequence[str]) -> None:
        """Write the baseline only when it is complete: every test ran, every model has results, something decided."""
        o = self.options
        ran = {pair_of(r) for r in report["results"]}
        why = []
        if self.failures:
            why.append(f"{len(self.failures)} test(s) failed or errored (first: {self.failures[0]})")
        why += [f"model {model_label(m, b)} has no claim result" for m, b, _ in models if (m, b) not in ran]
        if undecided:
            why.append("nothing was decided (see above)")
        if not report["results"]:
            why.append("no claim results were recorded")
        if why:
            self.messages.append(f"resstream: baseline {o.baseline} NOT written: {'; '.join(dict.fromkeys(why))}. A "
                                 "baseline must hold every model's results: fix the run and write it again.")
            self._fail(session)
            return
        assert o.baseline is not None  # __init__ refuses --resstream-update-baseline without a baseline path
        write_report(baseline_from_report(report), self._path(o.baseline))
        self.messages.append(f"resstream: baseline written to {o.baseline} ({len(report['results'])} claim results)")

    def _write_files(self, report: dict[str, Any]) -> None:
        o = self.options
        if o.json:
            self.written.append(str(write_report(report, self._path(o.json))))
        if o.md:
            from resstream_assert.report.markdown import render_markdown

            path = self._path(o.md)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_markdown(report), encoding="utf-8")
            self.written.append(str(path))
        if o.html or o.figures:
            from resstream_assert.report.plots import render_all, write_pngs

            rendered = render_all(report)
            if o.figures:
                pngs = write_pngs(report, self._path(o.figures), rendered=rendered)
                self.written.append(f"{self._path(o.figures)} ({len(pngs)} PNG figures)")
            if o.html:
                from resstream_assert.report.html import render_html

                path = self._path(o.html)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(render_html(report, rendered=rendered), encoding="utf-8")
                self.written.append(str(path))

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.is_worker or self.report is None:
            return
        from resstream_assert.report.terminal import write_summary

        write_summary(terminalreporter, self.report, self.diff, self.written, self.messages)
