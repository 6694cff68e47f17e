"""The ``resstream`` command: inspect and export models, and run the built-in claims suite.

Subcommands are thin: each parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


def _sites(args: argparse.Namespace) -> int:
    from resstream_assert.report.terminal import print_sites
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import ModelRef, Pipeline

    cfg = RunConfig(models=(args.spec,), input_size=args.input_size, trust_pickle=args.trust_pickle,
                    safe_globals=tuple(args.safe_globals or ()))
    return print_sites(Pipeline(cfg), [ModelRef(args.spec, args.backend)], as_json=args.json)


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (an input size in px)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels (e.g. 32 or 224)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be a positive number of pixels (e.g. 32 or 224), or "
                                         "left out for the model's own size")
    return value


def _opset(text: str) -> int:
    """argparse type: an ONNX opset the exporters can write (checked again per exporter)."""
    from resstream_assert.loading.onnx_export import opset_range

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an opset number") from None
    low, high = opset_range("torchscript")[0], opset_range("dynamo")[1]
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value}: torch exports ONNX opsets {low} to {high} (torchscript exporter "
                                         f"up to {opset_range('torchscript')[1]}, dynamo from 18); leave it out for "
                                         "the exporter's default")
    return value


#: The suite's common options that ``resstream run`` takes by their short names (``--images`` is
#: ``--resstream-images``), with the options table's help, metavar and check; the rest go after ``--``.
RUN_OPTIONS = ("claims", "images", "input-size", "probe", "seed", "survey", "label", "backend", "device",
               "report-json", "report-md", "report-html", "baseline", "compare-fail")


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


def _add_table_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """``--NAME`` for each option of the table in ``names``: one source for its help, metavar and default."""
    from resstream_assert.config.options import METAVARS, OPTION, help_text

    for name in names:
        opt = OPTION[name]
        text = help_text(opt).replace("%", "%%")
        if opt.kind == "bool":
            parser.add_argument(f"--{name}", action="store_true", default=None, help=text)
        else:
            parser.add_argument(f"--{name}", action="append" if opt.kind == "list" else "store", default=None,
                                metavar=METAVARS[name], help=text)


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
    from resstream_assert.report.terminal import claims_table, matrix_table, plain

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
    for line in claims_table(merged, width) + ([[("", {})]] + matrix_table(merged, width)
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
                         batch_size=cfg.batch_size, device=cfg.device, cache_dir=cfg.cache_dir, log=pipe.log)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as fh:
        fh.write(block_grid(fz, block.index, max_channels=None))
    s = fz.summary(block.index)
    print(f"wrote {args.out}: {block.name}, {len(chans)} channels x I/B/O, {args.steps} steps; success (response > "
          f"99th percentile of {len(pipe.model_probe(args.spec))} probe images): "
          + ", ".join(f"{k} {int(s['ok_' + k])}/{int(s['n_' + k])}" for k in ("I", "B", "O")))
    return 0


SAFE_GLOBALS_HELP = ("a class a checkpoint may hold besides tensors (repeatable), e.g. argparse.Namespace in a "
                     "Lightning checkpoint; built by the safe loader, no other code runs")


def _normalisation_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--mean R G B`` and ``--std R G B``: the model's normalisation, as --resstream-mean/--resstream-std."""
    for name, example in (("mean", "0.4914 0.4822 0.4465"), ("std", "0.2470 0.2435 0.2616")):
        parser.add_argument(f"--{name}", type=float, nargs=3, metavar=("R", "G", "B"), default=None,
                            help=f"the model's normalisation {name} (images in [0, 1]), e.g. {example}, {what}; give "
                                 "--mean and --std together (default: the model's own: its zoo card's, else "
                                 "ImageNet's)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs).

    Example:
        >>> build_parser().parse_args(["sites", "torchvision:resnet18"]).spec
        'torchvision:resnet18'
    """
    from resstream_assert.loading.onnx_export import EXPORTERS

    p = argparse.ArgumentParser(prog="resstream", description=(
        "Statistical checks of residual-stream claims on ResNets. Model specs: zoo:NAME, torchvision:ARCH[@WEIGHTS], "
        "timm:ARCH[@WEIGHTS], package.module:factory[@WEIGHTS], or a .onnx path; add +nc-id, +nc-plain, +nc-perm or "
        "+nc-rand for a negative control."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sites", help="print the residual blocks and canonical sites of a model")
    s.add_argument("spec", help="model spec, e.g. zoo:resnet18-synth96 or torchvision:resnet50")
    s.add_argument("--json", action="store_true", help="print JSON (a list of blocks with their sites)")
    s.add_argument("--input-size", type=_positive_int, default=None,
                   help="input size in px (default: the model's own; a factory's is read from its stem)")
    s.add_argument("--backend", default="torch", choices=("torch", "onnx"), help="discover on torch or ONNX graph")
    s.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that pickle whole models")
    s.add_argument("--safe-globals", action="append", metavar="module.Class", help=SAFE_GLOBALS_HELP)
    s.set_defaults(func=_sites)

    z = sub.add_parser("zoo", help="list the trained models shipped in model_zoo")
    z.add_argument("--json", action="store_true", help="print JSON")
    z.set_defaults(func=_zoo)

    r = sub.add_parser("run", help="run the built-in claims suite (pytest --pyargs resstream_assert.suite)",
                       description="Run the built-in claims suite. Further pytest arguments go after '--', e.g. "
                                   "resstream run zoo:resnet18-synth96 --survey -- -q")
    r.add_argument("spec", nargs="*", help="model specs (default: zoo:resnet18-synth96)")
    r.add_argument("--no-cache", action="store_true", help="do not use pytest's cache directory")
    r.add_argument("--trust-pickle", action="store_true",
                   help="allow checkpoints that pickle whole models (runs code from the file)")
    _add_table_options(r, RUN_OPTIONS)
    r.set_defaults(func=_run, pytest_args=[])

    f = sub.add_parser("featviz", help="feature visualizations of one block: a grid PNG, channels x I/B/O")
    f.add_argument("spec", help="model spec (a torch model), e.g. zoo:resnet18-synth96")
    f.add_argument("--block", required=True, help="block name or index, e.g. layer2.1 (see `resstream sites`)")
    f.add_argument("--out", required=True, help="output PNG path (checked before anything is computed)")
    f.add_argument("--channels", type=int, default=8, help="channels to visualise, sampled with --seed (default 8)")
    f.add_argument("--steps", type=int, default=256, help="Adam steps (default 256; the papers: 2560)")
    f.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    f.add_argument("--seeds", type=int, default=1, help="images per channel and site (the grid shows seed 0)")
    f.add_argument("--regime", default="block", choices=("block", "per-layer"), help="transform regime: block (one jitter per block) or per-layer (the papers' table)")
    f.add_argument("--jitter", type=int, default=None, help="jitter in px (default: the papers' for the depth)")
    f.add_argument("--size", type=int, default=None, help="image side in px (default: the model's input size)")
    f.add_argument("--images", type=int, default=512, help="probe images for the success check (default 512)")
    f.add_argument("--input-size", type=int, default=None, help="model input size in px (default: the model's)")
    f.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    f.add_argument("--seed", type=int, default=0, help="seed for the channel sample and the images")
    f.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk caches")
    f.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that pickle whole models")
    f.add_argument("--safe-globals", action="append", metavar="module.Class", help=SAFE_GLOBALS_HELP)
    f.set_defaults(func=_featviz)

    e = sub.add_parser("export", help="export a torch model spec to ONNX (with its normalization in the metadata)")
    e.add_argument("spec", help="model spec, e.g. zoo:resnet18-synth96 or torchvision:resnet50@weights.pth")
    e.add_argument("out", help="output .onnx path")
    e.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into Conv (smaller, like production exports; gains become proxies)")
    e.add_argument("--exporter", default="torchscript", choices=EXPORTERS, help="torch.onnx exporter (default: torchscript)")
    e.add_argument("--input-size", type=_positive_int, default=None,
                   help="input size in px (default: the model's own; a factory's is read from its stem)")
    e.add_argument("--opset", type=_opset, default=None, help="ONNX opset (default: the exporter's)")
    _normalisation_args(e, "written into the file's metadata")
    e.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that pickle whole models")
    e.add_argument("--safe-globals", action="append", metavar="module.Class", help=SAFE_GLOBALS_HELP)
    e.set_defaults(func=_export)

    rep = sub.add_parser("report", help="work with JSON reports (merge the reports of sharded CI jobs)")
    rsub = rep.add_subparsers(dest="report_command", required=True, metavar="ACTION")
    m = rsub.add_parser("merge", help="merge the JSON reports of a run's shards into one report and matrix")
    m.add_argument("reports", nargs="+", help="JSON reports written by --resstream-report-json (one per shard)")
    m.add_argument("--json", help="write the merged JSON report here")
    m.add_argument("--md", help="write the merged Markdown report here")
    m.add_argument("--html", help="write the merged HTML report (with figures) here")
    m.add_argument("--baseline", help="compare the merged results with this baseline; exit status 1 on a drift")
    m.add_argument("--compare-fail", action="append", metavar="EXPR",
                   help="tolerance for --baseline (repeatable), as --resstream-compare-fail; verdicts are always "
                        "compared")
    m.add_argument("--allow-probe-size", action="store_true",
                   help="compare with a baseline made at another number of probe images (stated in the comparison)")
    m.add_argument("--allow-incomplete", action="store_true",
                   help="merge a set of reports with shards or models missing (marked incomplete, with a warning); "
                        "by default that is an error")
    m.set_defaults(func=_merge)

    t = sub.add_parser("trend", help="claims over training: run the suite on checkpoints in order, draw each claim",
                       description="Run the claims on each checkpoint (in training order) with one configuration "
                                   "and write, per claim, the verdict and the effect with its CI at each checkpoint, "
                                   "and the skip / mix / overwrite proportions per block. Example: resstream trend "
                                   "torchvision:resnet18@runs/r18/epoch-000.safetensors ... --input-size 64 "
                                   "--out trend.html")
    t.add_argument("specs", nargs="+", help="checkpoint specs, in training order (first = earliest)")
    t.add_argument("--out", help="write the HTML page (figures + tables) here")
    t.add_argument("--md", help="write the Markdown tables here")
    t.add_argument("--json", help="write the JSON rows here")
    t.add_argument("--labels", help="comma-separated checkpoint labels (default: the weights files' names)")
    t.add_argument("--claims", help="comma-separated claim ids (default: the suite's; C1 is always added)")
    t.add_argument("--images", type=_positive_int, default=512, help="probe images per checkpoint (default 512)")
    t.add_argument("--input-size", type=_positive_int, default=None, help="input size in px (default: the model's)")
    t.add_argument("--probe", default=None, help="probe set: embedded, cifar10 or a folder (default: the model's)")
    t.add_argument("--seed", type=int, default=0, help="seed of the permutations and bootstraps")
    t.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    _normalisation_args(t, "for every checkpoint")
    t.set_defaults(func=_trend)
    return p


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
        why = OPTION["report-json"].check(path)
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
