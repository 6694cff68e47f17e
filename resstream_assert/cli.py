"""The ``resstream`` command: inspect and export models, and run the built-in claims suite.

Subcommands are thin: each parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable


def print_sites(pipeline, refs: Iterable, as_json: bool = False) -> int:
    """Print the residual blocks and canonical sites of each (spec, backend); returns the exit status 0.

    Shared by ``resstream sites`` and ``pytest --resstream-list-sites``.

    Example:
        >>> print_sites(Pipeline(RunConfig()), [ModelRef("zoo:resnet18-synth96", "torch")])  # doctest: +SKIP
    """
    for ref in refs:
        rmap = pipeline.map(ref.spec, ref.backend)
        loaded = pipeline.loaded(ref.spec, ref.backend)
        notes = [] if loaded is None else [f"{k}: {loaded.meta[m]}" for k, m in (
            ("input size", "input_size_source"), ("weights", "weights")) if loaded.meta.get(m)]
        if as_json:
            print(json.dumps(dict(rmap.to_dict(), notes=notes), indent=2), end="\n\n")
        else:
            print("\n".join([rmap.table()] + [f"  {n}" for n in notes]), end="\n\n")
    return 0


def _sites(args: argparse.Namespace) -> int:
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import ModelRef, Pipeline

    cfg = RunConfig(models=(args.spec,), input_size=args.input_size, trust_pickle=args.trust_pickle)
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


#: pytest options named in library messages, and their flag in each ``resstream`` subcommand.
_CLI_FLAGS = {"sites": {"trust-pickle": "--trust-pickle", "input-size": "--input-size", "backend": "--backend"},
              "export": {"trust-pickle": "--trust-pickle", "input-size": "--input-size"},
              "run": {"trust-pickle": "--trust-pickle"}}


def cli_message(text: str, command: str) -> str:
    """A library message worded for the ``resstream COMMAND`` user: ``--resstream-trust-pickle (Python: ...)``
    becomes ``--trust-pickle`` where the subcommand has that flag.

    Example:
        >>> cli_message("pass --resstream-trust-pickle (Python: trust_pickle=True).", "sites")
        'pass --trust-pickle.'
    """
    import re

    flags = _CLI_FLAGS.get(command, {})

    def sub(m: "re.Match[str]") -> str:
        flag = flags.get(m.group(1))
        return m.group(0) if flag is None else flag + (m.group(2) or "")

    return re.sub(r"--resstream-([a-z-]+)( N)?(?: \(Python: [^)]*\))?", sub, text)


def _zoo(args: argparse.Namespace) -> int:
    import model_zoo

    rows = [{"name": e.name, "spec": f"zoo:{e.name}", "arch": e.arch, "input_size": e.input_size,
             "classes": e.num_classes, "accuracy": e.accuracy} for e in model_zoo.entries()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'spec':<30}{'input':>6}{'classes':>8}{'held-out acc':>14}  architecture")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        print(f"{r['spec']:<30}{r['input_size']:>6}{r['classes']:>8}{acc:>14}  {r['arch']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import pytest

    argv = ["--pyargs", "resstream_assert.suite", "-p", "no:cacheprovider"] if args.no_cache else \
        ["--pyargs", "resstream_assert.suite"]
    for spec in args.spec or []:
        argv += ["--resstream-model", spec]
    if args.trust_pickle:
        argv.append("--resstream-trust-pickle")
    return int(pytest.main(argv + list(args.pytest_args)))


def _export(args: argparse.Namespace) -> int:
    from resstream_assert.discovery import discover
    from resstream_assert.errors import ModelSpecError
    from resstream_assert.loading import ModelSpec
    from resstream_assert.loading.onnx_export import export_onnx
    from resstream_assert.pipeline import load_model

    from resstream_assert.errors import OutputError
    from resstream_assert.loading.onnx_export import check_opset

    check_opset(args.opset, args.exporter)
    if os.path.isdir(args.out):
        raise OutputError(f"Output path {args.out!r} is a directory. Give the file to write, e.g. "
                          f"{os.path.join(args.out, 'model.onnx')!r}.")
    if ModelSpec.parse(args.spec).kind == "onnx":
        raise ModelSpecError(f"{args.spec!r} is already an ONNX file; export takes a torch model spec.")
    loaded = load_model(args.spec, input_size=args.input_size, trust_pickle=args.trust_pickle)
    path = export_onnx(loaded, args.out, fold_bn=args.fold_bn, exporter=args.exporter, opset=args.opset)
    onnx_model = load_model(str(path), providers=("cpu",))
    rmap = discover(onnx_model)
    m = onnx_model.meta
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): exporter {m['exporter']}, opset {m['opset']}, "
          f"BN {'folded into Conv (gains are proxies)' if m['bn_folded'] else 'kept'}, "
          f"input {onnx_model.input_size}px, {len(rmap)} residual blocks")
    return 0


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
    s.set_defaults(func=_sites)

    z = sub.add_parser("zoo", help="list the trained models shipped in model_zoo")
    z.add_argument("--json", action="store_true", help="print JSON")
    z.set_defaults(func=_zoo)

    r = sub.add_parser("run", help="run the built-in claims suite (pytest --pyargs resstream_assert.suite)",
                       description="Run the built-in claims suite. Further pytest arguments go after '--', e.g. "
                                   "resstream run zoo:resnet18-synth96 -- --resstream-survey -q")
    r.add_argument("spec", nargs="*", help="model specs (default: zoo:resnet18-synth96)")
    r.add_argument("--no-cache", action="store_true", help="do not use pytest's cache directory")
    r.add_argument("--trust-pickle", action="store_true",
                   help="allow checkpoints that pickle whole models (runs code from the file)")
    r.set_defaults(func=_run, pytest_args=[])

    e = sub.add_parser("export", help="export a torch model spec to ONNX (with its normalization in the metadata)")
    e.add_argument("spec", help="model spec, e.g. zoo:resnet18-synth96 or torchvision:resnet50@weights.pth")
    e.add_argument("out", help="output .onnx path")
    e.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into Conv (smaller, like production exports; gains become proxies)")
    e.add_argument("--exporter", default="torchscript", choices=EXPORTERS, help="torch.onnx exporter (default: torchscript)")
    e.add_argument("--input-size", type=_positive_int, default=None,
                   help="input size in px (default: the model's own; a factory's is read from its stem)")
    e.add_argument("--opset", type=_opset, default=None, help="ONNX opset (default: the exporter's)")
    e.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that pickle whole models")
    e.set_defaults(func=_export)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``resstream`` console script."""
    from resstream_assert.errors import ResstreamError

    import warnings

    from resstream_assert.errors import ResstreamWarning

    argv = list(sys.argv[1:] if argv is None else argv)
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
