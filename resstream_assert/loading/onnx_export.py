"""Export torch models to ONNX for the onnxruntime backend (``resstream export`` calls this).

Defaults keep BatchNormalization nodes (TorchScript exporter, ``do_constant_folding=False``),
because the gain claims read gamma from the graph; ``fold_bn=True`` gives what production
exports usually look like (BN folded into Conv; gains become a flagged proxy). The exported
file carries the model's normalization and class names in ``metadata_props``
(``resstream.*``), which :func:`~resstream_assert.loading.onnx_file.load_onnx` reads back:
an ONNX file does not otherwise say which mean/std its inputs need.

Imports torch lazily.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from resstream_assert.errors import BackendUnavailable, ModelSpecError, OutputError
from resstream_assert.loading.spec import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, ModelSpec
from resstream_assert.loading.torch_model import eval_mode

EXPORTERS = ("torchscript", "dynamo")


def export_onnx(loaded, path: str | Path, *, fold_bn: bool = False, exporter: str = "torchscript",
                opset: int | None = None) -> Path:
    """Export a torch :class:`~resstream_assert.loading.LoadedModel` (or an ``nn.Module``) to ``path``.

    The batch axis is dynamic; H and W are fixed at the model's input size. ``exporter``:
    ``"torchscript"`` (``torch.onnx.export(dynamo=False)``; scoped node names) or ``"dynamo"``
    (names through ``pkg.torch.onnx.name_scopes``; needs onnxscript). With ``fold_bn=False``
    the dynamo exporter runs with ``optimize=False``, its only switch that keeps BN.

    Example:
        >>> from resstream_assert import load_model
        >>> export_onnx(load_model("torchvision:resnet18"), "r18.onnx", fold_bn=True)  # doctest: +SKIP
        PosixPath('r18.onnx')
    """
    import torch

    path, module = _export_target(loaded, path, exporter, opset)
    size = int(getattr(loaded, "input_size", 224))
    param = next(module.parameters(), None)
    # Batch 2: the dynamo exporter specializes a size-1 axis to a constant.
    x = torch.zeros(2, 3, size, size, device=param.device if param is not None else "cpu")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder of output path {str(path)!r} ({exc}). Give a path in a "
                          "writable folder.") from exc
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    try:
        _run_exporter(module, x, tmp, exporter=exporter, fold_bn=fold_bn, opset=opset)
        _write_metadata(tmp, _metadata(loaded, module, size, exporter, fold_bn))
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"Cannot write the ONNX file {str(path)!r} ({exc}). Give a path in a writable "
                          "folder.") from exc
    except ImportError as exc:
        raise BackendUnavailable(f"The {exporter} ONNX exporter needs a package that is not installed ({exc}); "
                                 "install it with pip install 'resstream_assert[onnx-export]', or use "
                                 "--exporter torchscript.") from exc
    except (RuntimeError, ValueError, TypeError, torch.onnx.errors.OnnxExporterError) as exc:
        raise BackendUnavailable(f"torch.onnx.export ({exporter}) could not export {getattr(loaded, 'name', module)} "
                                 f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}). Try the other "
                                 "exporter (--exporter), or run this model on the torch backend.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _export_target(loaded, path: str | Path, exporter: str, opset: int | None) -> tuple[Path, Any]:
    """The output path and the torch module to export, after refusing an unknown exporter, an opset it cannot
    write, a folder as the output path and a model that is not torch."""
    import onnx  # noqa: F401 - missing onnx fails here, before any export work
    import torch

    if exporter not in EXPORTERS:
        raise ModelSpecError(f"Unknown ONNX exporter {exporter!r}; use one of {', '.join(EXPORTERS)}.")
    check_opset(opset, exporter)
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"Output path {str(path)!r} is a directory. Give the file to write, e.g. "
                          f"{str(path / 'model.onnx')!r}.")
    module = getattr(loaded, "module", loaded)
    if not isinstance(module, torch.nn.Module):
        raise ModelSpecError(f"export_onnx needs a torch model, got {type(module).__name__} (is it already ONNX?).")
    return path, module


def _run_exporter(module, x, tmp: Path, *, exporter: str, fold_bn: bool, opset: int | None) -> None:
    """Write ``module`` traced on ``x`` to ``tmp`` with torch's ``exporter``, in eval mode, its noise silenced."""
    import torch

    with eval_mode(module), torch.no_grad(), warnings.catch_warnings(), _no_graph_dump():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's (spec pitfall 8)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        if exporter == "torchscript":
            torch.onnx.export(module, (x,), str(tmp), dynamo=False, do_constant_folding=fold_bn,
                              opset_version=opset, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        else:
            program = torch.onnx.export(module, (x,), dynamo=True, optimize=fold_bn, opset_version=opset,
                                        input_names=["input"], output_names=["logits"], verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            assert program is not None  # the dynamo exporter returns its program
            program.save(str(tmp))


def _metadata(loaded, module, size: int, exporter: str, fold_bn: bool) -> dict[str, str]:
    """The ``resstream.*`` metadata an exported file carries: name, normalisation and its source, input size,
    exporter, whether BN was folded, the source spec, the class names."""
    props = {"resstream.name": str(getattr(loaded, "name", type(module).__name__)),
             "resstream.mean": ",".join(repr(float(v)) for v in getattr(loaded, "mean", IMAGENET_MEAN)),
             "resstream.std": ",".join(repr(float(v)) for v in getattr(loaded, "std", IMAGENET_STD)),
             # Where the torch model's normalisation came from (an option, a zoo card, ImageNet's default);
             # loading the file back reads mean and std from here ("ONNX metadata") unless overridden.
             "resstream.normalisation_source": str(getattr(loaded, "meta", {}).get("normalisation_source", "")),
             "resstream.input_size": str(size), "resstream.exporter": exporter,
             # Only when there was BN to fold: a BN-free model (ConvNeXt) exported with fold_bn is not "folded".
             "resstream.fold_bn": "1" if fold_bn and _has_bn(module) else "0",
             "resstream.source": str(getattr(loaded, "spec", ""))}
    if getattr(loaded, "class_names", None):
        props["resstream.class_names"] = json.dumps(list(loaded.class_names))
    return props


def _write_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace the ONNX file's ``metadata_props`` with ``props``."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _no_graph_dump():
    """The TorchScript exporter prints its whole IR graph (hundreds of lines) when an export fails: its
    logging switch tests a function object for truth, so it is always on. Our error says what failed."""
    import torch

    saved = getattr(torch._C, "_jit_onnx_log", None)
    if saved is None:
        yield
        return
    torch._C._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        torch._C._jit_onnx_log = saved


def opset_range(exporter: str = "torchscript") -> tuple[int, int]:
    """The ONNX opsets ``exporter`` can write, ``(lowest, highest)``, from torch's own limits.

    Example:
        >>> opset_range("torchscript")[0] >= 7
        True
    """
    from torch.onnx import _constants as c

    high = getattr(c, "ONNX_MAX_OPSET", 23)
    if exporter == "torchscript":
        return getattr(c, "ONNX_MIN_OPSET", 7), getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", high)
    return 18, high


def check_opset(opset: int | None, exporter: str = "torchscript") -> None:
    """Refuse an opset the exporter cannot write (``None`` = the exporter's default).

    Example:
        >>> check_opset(3)
        Traceback (most recent call last):
        ...
        resstream_assert.errors.ModelSpecError: ONNX opset 3 cannot be written by the torchscript exporter: use an opset from 7 to 20, or leave it unset for the exporter's default.
    """
    if opset is None:
        return
    low, high = opset_range(exporter)
    if not low <= int(opset) <= high:
        raise ModelSpecError(f"ONNX opset {opset} cannot be written by the {exporter} exporter: use an opset from "
                             f"{low} to {high}, or leave it unset for the exporter's default.")


def _has_bn(module) -> bool:
    import torch

    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def to_onnx_backend(loaded: LoadedModel, providers: tuple[str, ...] = ()) -> LoadedModel:
    """Export a torch model once (cached under the response cache directory) and load it on onnxruntime.

    The file is ``<cache>/onnx/<torch digest>-<size>px.onnx`` (the size is part of the name
    because H and W are fixed at export). BN is kept, so gains are true gammas.

    Example:
        >>> from resstream_assert import load_model
        >>> m = load_model("torchvision:resnet18", backend="onnx")  # doctest: +SKIP
        >>> m.backend, m.exported_from  # doctest: +SKIP
        ('onnx', 'torchvision:resnet18')
    """
    from filelock import FileLock

    from resstream_assert.cache_dir import default_cache_dir
    from resstream_assert.loading.onnx_file import load_onnx

    path = default_cache_dir() / "onnx" / f"{loaded.digest}-{loaded.input_size}px.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # xdist workers export each model once
        if not path.is_file():
            export_onnx(loaded, path)
    onnx_model = load_onnx(ModelSpec("onnx", str(path), None, None, str(path)), loaded.input_size, providers)
    # The export is cached by weights, so its metadata may hold another run's normalisation: the torch model's
    # (its card's, ImageNet's or the option's) is the one used, and its source with it.
    return loaded.with_(backend="onnx", module=None, input_size=onnx_model.input_size, digest=onnx_model.digest,
                        onnx_path=str(path), exported_from=loaded.spec, onnx=onnx_model.onnx, source=onnx_model.source,
                        input_size_source=onnx_model.input_size_source,
                        input_size_guessed=onnx_model.input_size_guessed)
