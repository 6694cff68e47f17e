"""The ``resstream`` command: inspect and export models, and run the built-in claims suite.

Subcommands are thin: each reads its parsed arguments and calls the library. This module holds
their bodies and :func:`main` (the console script); which arguments each takes is
:mod:`resstream_assert.cli_parser`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from resstream_assert.cli_parser import RUN_OPTIONS, make_parser

__all__ = ["RUN_OPTIONS", "build_parser", "cli_message", "main"]


def _sites(args: argparse.Namespace) -> int:
    from resstream_assert.report.terminal import print_sites
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import ModelRef, Pipeline

    cfg = RunConfig(models=(args.spec,), input_size=args.input_size, trust_pickle=args.trust_pickle,
                    safe_globals=tuple(args.safe_globals or ()))
    return print_sites(Pipeline(cfg), [ModelRef(args.spec, args.backend)], as_json=args.json)


#: pytest options named in library messages, and their flag in each ``resstream`` subcommand.
_CLI_FLAGS = {"sites": {"trust-pickle": "--trust-pickle", "input-size": "--input-size", "backend": "--backend",
                        "safe-globals": "--safe-globals"},
              "export": {"trust-pickle": "--trust-pickle", "input-size": "--input-size",
                         "safe-globals": "--safe-globals", "mean": "--mean", "std": "--std"},
              "featviz": {o: "--" + o.removeprefix("featviz-") for o in (
                  "trust-pickle", "input-size", "safe-globals", "channels", "featviz-steps", "featviz-lr",
                  "featviz-seeds", "featviz-regime", "featviz-jitter", "featviz-size", "featviz-device", "device",
                  "images", "seed")},
              "run": {"trust-pickle": "--trust-pickle", **{o: f"--{o}" for o in RUN_OPTIONS}},
              "trend": {"mean": "--mean", "std": "--std", "images": "--images", "input-size": "--input-size",
                        "probe": "--probe", "seed": "--seed", "claims": "--claims"}}


def cli_message(text: str, command: str) -> str:
    """A library message worded for the ``resstream COMMAND`` user: ``--resstream-trust-pickle (Python: ...)``
    becomes ``--trust-pickle`` where the subcommand has that flag.

    Example:
        >>> cli_message("pass --resstream-trust-pickle (Python: trust_pickle=True).", "sites")
        'pass --trust-pickle.'
        >>> cli_message("--resstream-model x: Cannot read model spec 'x'.", "sites")
        "Cannot read model spec 'x'."
    """
    import re

    flags = _CLI_FLAGS.get(command, {})
    text = re.sub(r"^--resstream-model \S+: (?=Model spec|Cannot read model spec)", "", text)  # the spec is named

    def sub(m: "re.Match[str]") -> str:
        flag = flags.get(m.group(1))
        return m.group(0) if flag is None else flag + (m.group(2) or "")

    return re.sub(r"--resstream-([a-z-]+)( N)?(?: \(Python: [^)]*\))?", sub, text)


def _zoo(args: argparse.Namespace) -> int:
    from resstream_assert import zoo

    rows = [{"name": e.name, "spec": f"zoo:{e.name}", "arch": e.arch, "input_size": e.input_size,
             "classes": e.num_classes, "accuracy": e.accuracy} for e in zoo.entries()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'spec':<30}{'input':>6}{'classes':>8}{'held-out acc':>14}  architecture")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        print(f"{r['spec']:<30}{r['input_size']:>6}{r['classes']:>8}{acc:>14}  {r['arch']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from resstream_assert.pytest_plugin import run_suite

    argv = ["--pyargs", "resstream_assert.suite", "-p", "no:cacheprovider"] if args.no_cache else \
        ["--pyargs", "resstream_assert.suite"]
    for spec in args.spec or []:
        argv += ["--resstream-model", spec]
    if args.trust_pickle:
        argv.append("--resstream-trust-pickle")
    for name in RUN_OPTIONS:  # checked by the plugin at start-up, as the pytest flags are
        value = getattr(args, name.replace("-", "_"))
        if value is True:
            argv.append(f"--resstream-{name}")
        elif value is not None:
            for v in value if isinstance(value, list) else [value]:
                argv += [f"--resstream-{name}", str(v)]
    return run_suite(argv + list(args.pytest_args))


def _export(args: argparse.Namespace) -> int:
    from resstream_assert.discovery import discover
    from resstream_assert.errors import ModelSpecError, OutputError
    from resstream_assert.loading import as_spec
    from resstream_assert.formatting import fnorm
    from resstream_assert.loading.onnx_export import check_opset, export_onnx
    from resstream_assert.pipeline import load_model

    check_opset(args.opset, args.exporter)
    if os.path.isdir(args.out):
        raise OutputError(f"Output path {args.out!r} is a directory. Give the file to write, e.g. "
                          f"{os.path.join(args.out, 'model.onnx')!r}.")
    _check_output(args.out, ".onnx", "model specs know an ONNX file by its .onnx name")
    spec = as_spec(args.spec)  # read once, here at the edge; the parsed spec travels on
    if spec.kind == "onnx":
        raise ModelSpecError(f"{args.spec!r} is already an ONNX file; export takes a torch model spec.")
    loaded = load_model(spec, input_size=args.input_size, trust_pickle=args.trust_pickle,
                        safe_globals=tuple(args.safe_globals or ()), mean=args.mean, std=args.std)
    discover(loaded)  # a network without residual blocks is refused before anything is written
    path = export_onnx(loaded, args.out, fold_bn=args.fold_bn, exporter=args.exporter, opset=args.opset)
    try:
        onnx_model = load_model(str(path), providers=("cpu",))
        rmap = discover(onnx_model)
    except Exception:  # an export that cannot be tested is not left behind
        path.unlink(missing_ok=True)
        raise
    m = onnx_model.onnx
    assert m is not None  # an ONNX file's record always has it
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): exporter {m.exporter}, opset {m.opset}, "
          f"BN {'folded into Conv (gains are proxies)' if m.bn_folded else 'kept'}, "
          f"input {onnx_model.input_size}px, {len(rmap)} residual blocks; normalisation in the metadata: "
          f"{fnorm({'mean': onnx_model.mean, 'std': onnx_model.std, 'source': loaded.normalisation_source})}")
    return 0


def _check_output(path: str, suffix: str, why: str) -> None:
    """An output file of a ``resstream`` command: its suffix, and never a system location (symlinks followed)."""
    from resstream_assert.errors import OutputError
    from resstream_assert.paths import system_location

    if not path.lower().endswith(suffix):
        raise OutputError(f"Output path {path!r} does not end in {suffix}: {why}. Give a {suffix} file name.")
    where = system_location(path)
    if where:
        raise OutputError(f"Output path {path!r} cannot be written: {where}. Give a path in a project or temporary "
                          "folder.")


def _merge(args: argparse.Namespace) -> int:
    from resstream_assert.config.checks import writable_file
    from resstream_assert.gate.baseline import compare, pair_models
    from resstream_assert.gate.compat import incompatibilities, refusal
    from resstream_assert.gate.rules import gate_rules
    from resstream_assert.keys import model_pairs
    from resstream_assert.report.collect import read_report
    from resstream_assert.report.merge import check_outputs, merge_reports, write_all
    from resstream_assert.report.terminal import Line, claims_table, matrix_table, plain

    try:
        if args.compare_fail and not args.baseline:
            raise ValueError(f"--compare-fail {' '.join(args.compare_fail)}: a tolerance needs a baseline to compare "
                             "with; add --baseline PATH")
        outputs = [(k, p) for k, p in (("json", args.json), ("md", args.md), ("html", args.html)) if p]
        check_outputs(outputs, [(args.baseline, "the baseline (--baseline)")] +
                      [(r, "an input report") for r in args.reports], writable_file)
        reports = [read_report(p) for p in args.reports]
        merged = merge_reports(reports, [os.path.basename(p) for p in args.reports],
                               allow_incomplete=args.allow_incomplete)
        rules = gate_rules(args.compare_fail or ())
        baseline = read_report(args.baseline) if args.baseline else None
        notes: list[str] = []
        if baseline is not None:
            pairs = pair_models(baseline, model_pairs(merged["results"]))
            problems, notes = incompatibilities(baseline, merged, pairs, allow_probe_size=args.allow_probe_size)
            if problems:
                raise ValueError(refusal(problems, args.baseline, "--allow-probe-size"))
    except (OSError, ValueError) as exc:
        print(f"resstream: error: {exc}", file=sys.stderr)
        return 2
    for line in merged.get("incomplete", []):
        print(f"resstream: WARNING: incomplete run merged (--allow-incomplete): {line}", file=sys.stderr)
    diff = compare(baseline, merged, rules, baseline_path=args.baseline, notes=notes) if baseline is not None else None
    if diff is not None:
        merged["baseline"] = diff.to_dict()
    width = shutil.get_terminal_size().columns  # reasons wrap to the terminal, never cut
    blank: list[Line] = [[("", {})]]
    for line in claims_table(merged, width) + (blank + matrix_table(merged, width)
                                               if len(merged["models"]) > 1 else []):
        print(plain(line))
    try:
        write_all(merged, outputs)
    except OSError as exc:
        print(f"resstream: error: {exc}; no merged report was written", file=sys.stderr)
        return 2
    print(f"merged {len(args.reports)} reports: {len(merged['results'])} results of {len(merged['models'])} models")
    return _merge_verdict(merged, diff, args.baseline)


def _merge_verdict(merged: dict, diff, baseline_path: str | None) -> int:
    """1 when the merged results drifted from the baseline or decided nothing (a loud line in survey mode)."""
    from resstream_assert.gate import undecided

    code = 0
    if diff is not None:
        print(diff.table())
        if diff.failed:
            print(f"resstream: the merged results drifted from the baseline {baseline_path}", file=sys.stderr)
            code = 1
    lines = undecided(merged["results"])
    if lines:
        survey = bool((merged.get("config") or {}).get("survey"))
        print("resstream: NOTHING WAS DECIDED" + (" (survey mode)" if survey else ": the merged run checked nothing"),
              *[f"  {line}" for line in lines], sep="\n", file=sys.stderr)
        code = code or (0 if survey else 1)
    return code


def _featviz(args: argparse.Namespace) -> int:
    from resstream_assert.cache_dir import default_cache_dir
    from resstream_assert.config import RunConfig
    from resstream_assert.capture.featviz_responses import featviz_stimuli, sample_channels
    from resstream_assert.config.checks import writable_file
    from resstream_assert.errors import DiscoveryError, OutputError
    from resstream_assert.report.featviz_grid import block_grid
    from resstream_assert.pipeline import Pipeline

    _check_output(args.out, ".png", "the grid is written as a PNG image")
    why = writable_file(args.out)
    if why:
        raise OutputError(f"--out {args.out}: {why}")
    fv = {"steps": args.steps, "lr": args.lr, "seeds": args.seeds, "regime": args.regime, "jitter": args.jitter,
          "size": args.size, "device": args.device}
    cfg = RunConfig(models=(args.spec,), images=args.images, input_size=args.input_size, seed=args.seed,
                    device=args.device, trust_pickle=args.trust_pickle, stimuli="featviz", channels=args.channels,
                    featviz=fv, cache_dir=None if args.no_cache else str(default_cache_dir()),
                    safe_globals=tuple(args.safe_globals or ()))  # every value checked before anything is computed
    pipe = Pipeline(cfg, log=lambda line: print(line, file=sys.stderr))
    loaded, rmap = pipe.model(args.spec), pipe.map(args.spec)
    try:
        block = rmap[int(args.block) if args.block.isdigit() else args.block]
    except (KeyError, IndexError):
        raise DiscoveryError(f"--block {args.block}: no such block; this model's blocks are "
                             f"{', '.join(b.name for b in rmap)} (or an index from 0 to {len(rmap) - 1})") from None
    chans = sample_channels(rmap, args.channels, args.seed, skip_first=False)[block.index]
    fz = featviz_stimuli(loaded, rmap, loaded, rmap, pipe.responses(args.spec, ("id",))["id"],
                         channels={block.index: chans}, seeds=args.seeds, settings=pipe.featviz_settings(),
                         run=pipe.capture_settings(), cache_dir=cfg.cache_dir)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as fh:
        fh.write(block_grid(fz, block.index, max_channels=None))
    s = fz.summary(block.index)
    print(f"wrote {args.out}: {block.name}, {len(chans)} channels x I/B/O, {args.steps} steps; success (response > "
          f"99th percentile of {len(pipe.model_probe(args.spec))} probe images): "
          + ", ".join(f"{k} {int(s['ok_' + k])}/{int(s['n_' + k])}" for k in ("I", "B", "O")))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs), with this module's subcommand bodies.

    Example:
        >>> build_parser().parse_args(["sites", "torchvision:resnet18"]).spec
        'torchvision:resnet18'
    """
    # Looked up at each call, not bound once: a test may replace a body (monkeypatch cli._sites).
    return make_parser({"sites": _sites, "zoo": _zoo, "run": _run, "featviz": _featviz, "export": _export,
                        "report": _merge, "trend": _trend})


def _trend(args: argparse.Namespace) -> int:
    from resstream_assert.api import trend
    from resstream_assert.config import OPTION, build_run_config
    from resstream_assert.errors import OutputError
    from resstream_assert.report.trend import render_trend_html, render_trend_markdown

    outputs = {k: getattr(args, k) for k in ("out", "md", "json") if getattr(args, k)}
    if not outputs:
        raise OutputError("resstream trend writes nothing without --out PATH.html, --md PATH or --json PATH")
    cfg = build_run_config({"images": args.images, "input-size": args.input_size, "probe": args.probe,
                            "seed": args.seed, "claims": args.claims, "no-cache": args.no_cache, "mean": args.mean,
                            "std": args.std})
    for flag, path in outputs.items():  # checked before hours of work, not after
        check = OPTION["report-json"].check
        assert check is not None  # an output option always has its writability check
        why = check(path)
        if why:
            raise OutputError(f"--{flag} {path}: {why}")
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    t = trend(args.specs, labels=labels, config=cfg, progress=lambda line: print(line, file=sys.stderr))
    texts = {"out": render_trend_html(t), "md": render_trend_markdown(t), "json": json.dumps(t, indent=1) + "\n"}
    for flag, path in outputs.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(texts[flag], encoding="utf-8")
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``resstream`` console script."""
    import warnings

    from resstream_assert.errors import ResstreamError, ResstreamWarning

    argv = list(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m pytest` does: mynet:make_net from here
        sys.path.insert(0, os.getcwd())
    extra: list[str] = []
    if argv[:1] == ["run"] and "--" in argv:  # `resstream run SPEC -- PYTEST ARGS`: the rest goes to pytest as is
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.command == "run":
        args.pytest_args = extra
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResstreamWarning)
            return args.func(args)
    except ResstreamError as exc:
        print(f"resstream: error: {cli_message(str(exc), args.command)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `resstream sites ... | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    finally:  # outside the recording context: a re-emitted warning must not be recorded again
        for w in caught:
            if issubclass(w.category, ResstreamWarning):
                print(f"resstream: warning: {cli_message(str(w.message), args.command)}", file=sys.stderr)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


if __name__ == "__main__":
    sys.exit(main())
