"""Help that matches: one default per option, metavars that say what is expected, no internal codes, and
``resstream run`` takes the suite's common options."""

from __future__ import annotations

import re

import pytest

from resstream_assert.cli import RUN_OPTIONS, build_parser
from resstream_assert.config.options import METAVARS, OPTIONS, help_text


def _pytest_help(pytester) -> str:
    result = pytester.runpytest_subprocess("--help", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stderr.str()
    return result.stdout.str()


def test_pytest_help_names_each_default_once_with_metavars_that_say_what_is_expected(pytester):
    text = _pytest_help(pytester)
    section = text[text.index("residual-stream claims (resstream_assert):"):]
    section = section[: section.index("\n\n")]
    entries = re.split(r"\n  (?=--resstream-)", section)[1:]
    assert len(entries) == len(OPTIONS)
    for entry in entries:
        flat = " ".join(entry.split())
        assert flat.lower().count("default") <= 1, flat
        assert "(default: None)" not in flat and not re.search(r"\bW\d\b", flat), flat
    assert "--resstream-label=LABEL" in section and "--resstream-backend=torch|onnx" in section
    assert "--resstream-images=N" in section and "--resstream-compare-fail=EXPR" in section
    assert "--resstream-label=SPEC" not in section and "--resstream-backend=SPEC" not in section


def test_every_valued_option_has_a_metavar_and_one_default():
    for opt in OPTIONS:
        if opt.kind != "bool":
            assert opt.name in METAVARS, opt.name
        assert help_text(opt).lower().count("default") <= 1, opt.name


@pytest.mark.parametrize("argv,forwarded", [
    (["run", "m.py:f", "--images", "64", "--claims", "C1,C3", "--survey"],
     ["--resstream-model", "m.py:f", "--resstream-claims", "C1,C3", "--resstream-images", "64",
      "--resstream-survey"]),
    (["run", "--label", "a", "--label", "b", "x", "y", "--report-html", "r.html", "--", "-q"],
     ["--resstream-model", "x", "--resstream-model", "y", "--resstream-label", "a", "--resstream-label", "b",
      "--resstream-report-html", "r.html", "-q"]),
])
def test_resstream_run_takes_the_common_options(monkeypatch, argv, forwarded):
    import resstream_assert.pytest_plugin as plugin
    from resstream_assert import cli

    seen = []
    monkeypatch.setattr(plugin, "run_suite", lambda args: seen.append(args) or 0)
    assert cli.main(argv) == 0
    (args,) = seen
    assert args[:2] == ["--pyargs", "resstream_assert.suite"] and args[2:] == forwarded
    assert {"images", "claims", "survey"} <= set(RUN_OPTIONS)


def test_run_help_shows_them():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for flag in ("--images N", "--claims C1,C3,...", "--survey", "--input-size PX"):
        assert flag in text
