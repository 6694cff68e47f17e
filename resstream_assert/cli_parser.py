"""The ``resstream`` command's argument parser: one builder per subcommand.

The subcommands' bodies live in :mod:`resstream_assert.cli`, which hands them in as
``commands`` (subcommand name -> function of the parsed arguments): this module only says
which arguments each subcommand takes, their help and their checks.
"""

from __future__ import annotations

import argparse
from typing import Callable, Mapping

#: A subcommand's body: the parsed arguments in, the exit status out.
Command = Callable[[argparse.Namespace], int]

#: The subcommands, in the order ``resstream --help`` lists them (``report`` runs ``report merge``).
COMMANDS = ("sites", "zoo", "run", "featviz", "export", "report", "trend")

#: The suite's common options that ``resstream run`` takes by their short names (``--images`` is
#: ``--resstream-images``), with the options table's help, metavar and check; the rest go after ``--``.
RUN_OPTIONS = ("claims", "images", "input-size", "probe", "seed", "survey", "label", "backend", "device",
               "report-json", "report-md", "report-html", "baseline", "compare-fail")

SAFE_GLOBALS_HELP = ("a class a checkpoint may hold besides tensors (repeatable), e.g. argparse.Namespace in a "
                     "Lightning checkpoint; built by the safe loader, no other code runs")


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


def _normalisation_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--mean R G B`` and ``--std R G B``: the model's normalisation, as --resstream-mean/--resstream-std."""
    for name, example in (("mean", "0.4914 0.4822 0.4465"), ("std", "0.2470 0.2435 0.2616")):
        parser.add_argument(f"--{name}", type=float, nargs=3, metavar=("R", "G", "B"), default=None,
                            help=f"the model's normalisation {name} (images in [0, 1]), e.g. {example}, {what}; give "
                                 "--mean and --std together (default: the model's own: its zoo card's, else "
                                 "ImageNet's)")


def _checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """``--trust-pickle`` and ``--safe-globals``: what a checkpoint file may hold besides tensors."""
    parser.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that pickle whole models")
    parser.add_argument("--safe-globals", action="append", metavar="module.Class", help=SAFE_GLOBALS_HELP)


def _add_sites(sub: argparse._SubParsersAction, func: Command) -> None:
    """``resstream sites SPEC``: the residual blocks and canonical sites of a model."""
    s = sub.add_parser("sites", help="print the residual blocks and canonical sites of a model")
    s.add_argument("spec", help="model spec, e.g. zoo:resnet18-synth96 or torchvision:resnet50")
    s.add_argument("--json", action="store_true", help="print JSON (a list of blocks with their sites)")
    s.add_argument("--input-size", type=_positive_int, default=None,
                   help="input size in px (default: the model's own; a factory's is read from its stem)")
    s.add_argument("--backend", default="torch", choices=("torch", "onnx"), help="discover on torch or ONNX graph")
    _checkpoint_args(s)
    s.set_defaults(func=func)


def _add_zoo(sub: argparse._SubParsersAction, func: Command) -> None:
    """``resstream zoo``: the trained models shipped in model_zoo."""
    z = sub.add_parser("zoo", help="list the trained models shipped in model_zoo")
    z.add_argument("--json", action="store_true", help="print JSON")
    z.set_defaults(func=func)


def _add_run(sub: argparse._SubParsersAction, func: Command) -> None:
    """``resstream run [SPEC ...] [-- PYTEST ARGS]``: the built-in claims suite."""
    r = sub.add_parser("run", help="run the built-in claims suite (pytest --pyargs resstream_assert.suite)",
                       description="Run the built-in claims suite. Further pytest arguments go after '--', e.g. "
                                   "resstream run zoo:resnet18-synth96 --survey -- -q")
    r.add_argument("spec", nargs="*", help="model specs (default: zoo:resnet18-synth96)")
    r.add_argument("--no-cache", action="store_true", help="do not use pytest's cache directory")
    r.add_argument("--trust-pickle", action="store_true",
                   help="allow checkpoints that pickle whole models (runs code from the file)")
    _add_table_options(r, RUN_OPTIONS)
    r.set_defaults(func=func, pytest_args=[])


def _add_featviz(sub: argparse._SubParsersAction, func: Command) -> None:
    """``resstream featviz SPEC --block B --out PNG``: a grid of feature visualizations of one block."""
    f = sub.add_parser("featviz", help="feature visualizations of one block: a grid PNG, channels x I/B/O")
    f.add_argument("spec", help="model spec (a torch model), e.g. zoo:resnet18-synth96")
    f.add_argument("--block", required=True, help="block name or index, e.g. layer2.1 (see `resstream sites`)")
    f.add_argument("--out", required=True, help="output PNG path (checked before anything is computed)")
    f.add_argument("--channels", type=int, default=8, help="channels to visualise, sampled with --seed (default 8)")
    f.add_argument("--steps", type=int, default=256, help="Adam steps (default 256; the papers: 2560)")
    f.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    f.add_argument("--seeds", type=int, default=1, help="images per channel and site (the grid shows seed 0)")
    f.add_argument("--regime", default="block", choices=("block", "per-layer"),
                   help="transform regime: block (one jitter per block) or per-layer (the papers' table)")
    f.add_argument("--jitter", type=int, default=None, help="jitter in px (default: the papers' for the depth)")
    f.add_argument("--size", type=int, default=None, help="image side in px (default: the model's input size)")
    f.add_argument("--images", type=int, default=512, help="probe images for the success check (default 512)")
    f.add_argument("--input-size", type=int, default=None, help="model input size in px (default: the model's)")
    f.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    f.add_argument("--seed", type=int, default=0, help="seed for the channel sample and the images")
    f.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk caches")
    _checkpoint_args(f)
    f.set_defaults(func=func)


def _add_export(sub: argparse._SubParsersAction, func: Command, exporters: tuple[str, ...]) -> None:
    """``resstream export SPEC OUT.onnx``: a torch model spec as an ONNX file with its normalisation."""
    e = sub.add_parser("export", help="export a torch model spec to ONNX (with its normalization in the metadata)")
    e.add_argument("spec", help="model spec, e.g. zoo:resnet18-synth96 or torchvision:resnet50@weights.pth")
    e.add_argument("out", help="output .onnx path")
    e.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into Conv (smaller, like production exports; gains become proxies)")
    e.add_argument("--exporter", default="torchscript", choices=exporters,
                   help="torch.onnx exporter (default: torchscript)")
    e.add_argument("--input-size", type=_positive_int, default=None,
                   help="input size in px (default: the model's own; a factory's is read from its stem)")
    e.add_argument("--opset", type=_opset, default=None, help="ONNX opset (default: the exporter's)")
    _normalisation_args(e, "written into the file's metadata")
    _checkpoint_args(e)
    e.set_defaults(func=func)


def _add_report(sub: argparse._SubParsersAction, func: Command) -> None:
    """``resstream report merge REPORT ...``: one report and matrix from the JSON reports of a run's shards."""
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
    m.set_defaults(func=func)


def _add_trend(sub: argparse._SubParsersAction, func: Command) -> None:
    """``resstream trend SPEC ... --out HTML``: the claims over a training run's checkpoints."""
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
    t.set_defaults(func=func)


def make_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The ``resstream`` parser; each subcommand's parsed arguments carry its body in ``commands`` as ``func``.

    Example:
        >>> parser = make_parser(dict.fromkeys(COMMANDS, lambda args: 0))
        >>> args = parser.parse_args(["zoo", "--json"])
        >>> args.command, args.json, args.func(args)
        ('zoo', True, 0)
    """
    from resstream_assert.loading.onnx_export import EXPORTERS

    p = argparse.ArgumentParser(prog="resstream", description=(
        "Statistical checks of residual-stream claims on ResNets. Model specs: zoo:NAME, torchvision:ARCH[@WEIGHTS], "
        "timm:ARCH[@WEIGHTS], package.module:factory[@WEIGHTS], or a .onnx path; add +nc-id, +nc-plain, +nc-perm or "
        "+nc-rand for a negative control."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sites(sub, commands["sites"])
    _add_zoo(sub, commands["zoo"])
    _add_run(sub, commands["run"])
    _add_featviz(sub, commands["featviz"])
    _add_export(sub, commands["export"], EXPORTERS)
    _add_report(sub, commands["report"])
    _add_trend(sub, commands["trend"])
    return p
