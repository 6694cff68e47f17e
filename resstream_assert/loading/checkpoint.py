"""Weights files: read any checkpoint people publish, by content, and refuse the rest clearly.

The format is decided from the file's first bytes, never from its suffix: a zip or legacy
PyTorch file goes to ``torch.load(weights_only=True)``, a safetensors file to safetensors,
and an empty file, a Git LFS pointer, an HTML page, a text file or random bytes each get
their own message. The state dict is then found inside the common wrappers (``state_dict``,
``model``, ``model_state_dict``, ``net``, ``ema``, ``model_ema``; the first that holds
tensors wins, in that order) and the prefixes ``module.`` (DataParallel), ``_orig_mod.``
(torch.compile) and ``model.`` (Lightning) are stripped when that makes the keys fit.
:class:`Checkpoint` says which key and prefix were used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from resstream_assert.errors import CheckpointError

__all__ = ["Checkpoint", "WRAPPER_KEYS", "PREFIXES", "sniff", "read_checkpoint", "fit_prefix", "check_finite"]

#: Where published checkpoints keep their state dict, in the order a loader should prefer them:
#: the trained weights before an EMA copy (timm's validate.py and DeiT take ``state_dict`` / ``model``).
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "ema", "model_ema")
#: Key prefixes added by wrappers: DataParallel/DDP, torch.compile, PyTorch Lightning modules.
PREFIXES = ("module.", "_orig_mod.", "model.")
_ALWAYS_STRIP = ("module.", "_orig_mod.")  # never a real top-level module name of a whole network
#: Trust-pickle advice, worded for every entry point (the ``resstream`` command rewrites it to its flag).
TRUST_HINT = "--resstream-trust-pickle (Python: trust_pickle=True)"


@dataclass
class Checkpoint:
    """What a weights file held: a state dict (or a trusted pickled module) and how it was found.

    ``key`` is the wrapper key the state dict came from (None: the file is the state dict);
    ``prefix`` the key prefix stripped (``""``: none); ``fmt`` the file format;
    ``unused`` other keys of the file that also held tensors (e.g. an EMA copy).
    """

    state: Any
    path: str
    fmt: str
    key: str | None = None
    prefix: str = ""
    unused: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for headers and logs.

        Example:
            >>> Checkpoint({}, "ckpt.pth", "zip", key="net", prefix="module.").describe()
            "ckpt.pth (torch zip): key 'net', prefix 'module.' stripped"
        """
        kind = "a pickled whole model (trusted)" if not isinstance(self.state, dict) else "a plain state dict"
        parts = [f"key {self.key!r}" if self.key else kind]
        if self.prefix:
            parts.append(f"prefix {self.prefix!r} stripped")
        if self.unused:
            parts.append(f"not used: {', '.join(repr(k) for k in self.unused)}")
        kind = {"zip": "torch zip", "legacy": "torch legacy", "safetensors": "safetensors"}.get(self.fmt, self.fmt)
        return f"{Path(self.path).name} ({kind}): " + ", ".join(parts)


def sniff(path: str | Path) -> str:
    """The format of a file from its first bytes: ``zip``, ``legacy`` (pre-1.6 torch pickle),
    ``safetensors``, ``empty``, ``lfs``, ``html``, ``text`` or ``unknown``.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".pt", delete=False) as fh:
        ...     _ = fh.write("hello")
        >>> sniff(fh.name)
        'text'
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "legacy"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    low = head.lstrip().lower()
    if low.startswith(b"version https://git-lfs"):
        return "lfs"
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low[:512]:
        return "html"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "text" if all(c.isprintable() or c in "\n\r\t" for c in text) else "unknown"


#: What a file that is not weights is, and what to do about it (by :func:`sniff` format).
_NOT_WEIGHTS = {
    "empty": "is empty (0 bytes): the download or copy was probably interrupted. Download or save it again.",
    "lfs": "is a Git LFS pointer, not the weights (the repository was cloned without Git LFS). Run 'git lfs pull' in "
           "that repository, or download the file itself.",
    "html": "is an HTML page, not the weights (a download link that returned a web page, e.g. a login or virus-scan "
            "warning). Download the file itself.",
    "text": "is a text file, not a PyTorch checkpoint or safetensors file. Point the spec's '@WEIGHTS' at the weights "
            "file itself.",
}


def _refuse_non_weights(p: Path, fmt: str) -> None:
    name = repr(str(p))
    if fmt in _NOT_WEIGHTS:
        raise CheckpointError(f"Weights file {name} {_NOT_WEIGHTS[fmt]}")
    suffix = " (a .safetensors name, but not a readable safetensors file)" if p.suffix == ".safetensors" else ""
    raise CheckpointError(f"Weights file {name} is not a PyTorch checkpoint or safetensors file{suffix}: its content "
                          "is in no format known here (unrecognized first bytes), so it is corrupt or something else. "
                          "Check the path, and download or save the file again.")


def _check_path(p: Path) -> None:
    if p.is_dir():
        inside = sorted(f.name for f in p.iterdir() if f.suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt",
                                                                      ".th", ".tar"))
        hint = (f" It holds {', '.join(inside[:4])}: name one of them, e.g. '@{p / inside[0]}'." if inside else
                " Name the weights file inside it.")
        raise CheckpointError(f"Weights path {str(p)!r} is a directory, not a weights file.{hint}")
    if not p.exists():
        raise CheckpointError(f"Weights file {str(p)!r} does not exist. Check the path after '@' in the model spec "
                              "(relative paths are taken from the current directory).")
    if not p.is_file():
        raise CheckpointError(f"Weights path {str(p)!r} is not a regular file. Point the spec at the weights file.")


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False, safe_globals: Iterable[str] = ()) -> Checkpoint:
    """Read a weights file by content and find its state dict (see the module docstring).

    With ``trust_pickle=True`` a pickled whole ``nn.Module`` is returned as ``state``. ``safe_globals``
    names classes (``"argparse.Namespace"``) the safe loader may build too (``torch.serialization.safe_globals``):
    the route for a training checkpoint whose saved settings hold such an object.

    Example:
        >>> ckpt = read_checkpoint("ckpt.pth")  # doctest: +SKIP
        >>> ckpt.key, ckpt.prefix  # doctest: +SKIP
        ('net', 'module.')
    """
    p = Path(path)
    _check_path(p)
    fmt = sniff(p)
    if fmt == "safetensors":
        obj = _read_safetensors(p)
    elif fmt in ("zip", "legacy"):
        _refuse_torchscript(p, fmt)
        obj = _torch_load(p, fmt, trust_pickle, tuple(safe_globals))
    else:
        _refuse_non_weights(p, fmt)
    ckpt = _unwrap(obj, str(p), fmt)
    if isinstance(ckpt.state, dict):
        ckpt.state, ckpt.prefix = _strip(ckpt.state, _ALWAYS_STRIP)
    return ckpt


def _read_safetensors(p: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"Weights file {str(p)!r} is not a readable safetensors file ({exc}): it is truncated "
                              "or corrupt. Download or export it again.") from exc


def _refuse_torchscript(p: Path, fmt: str) -> None:
    """A TorchScript archive (``torch.jit.save``) holds compiled code, not a checkpoint: say so, and the way out."""
    import zipfile

    if fmt != "zip":
        return
    try:
        names = zipfile.ZipFile(p).namelist()
    except (zipfile.BadZipFile, OSError):
        return  # torch.load names the damage
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(
            f"Weights file {str(p)!r} is a TorchScript archive (saved with torch.jit.save or torch.jit.script), not "
            "a checkpoint: it holds compiled code, which is not run here, and a scripted module cannot be traced to "
            "find its residual blocks. Save its weights as a state dict, if you trust the file: "
            f"torch.save(torch.jit.load({p.name!r}).state_dict(), 'weights.pth'), and test them with the spec of "
            "its architecture ('torchvision:ARCH@weights.pth' or 'package.module:factory@weights.pth').")


def _load_with(p: Path, trust_pickle: bool, safe_globals: tuple[str, ...]) -> Any:
    import torch

    if trust_pickle or not safe_globals:
        return torch.load(str(p), map_location="cpu", weights_only=not trust_pickle)
    with torch.serialization.safe_globals([_import_class(name) for name in safe_globals]):
        return torch.load(str(p), map_location="cpu", weights_only=True)


def _import_class(name: str) -> type:
    """The class ``module.Class`` that ``--resstream-safe-globals`` names (imported from this environment)."""
    import importlib

    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr) if module else None
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"--resstream-safe-globals {name}: cannot import it ({exc}); give a class as "
                              "module.Class, e.g. argparse.Namespace.") from exc
    if not isinstance(obj, type):
        raise CheckpointError(f"--resstream-safe-globals {name}: is not a class; give a class as module.Class, e.g. "
                              "argparse.Namespace.")
    return obj


def _refused_global(p: Path, exc: Exception) -> CheckpointError:
    """The safe loader refused a class: name it, and offer the safe routes before the unsafe one."""
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    what = f" (class {m.group(1)})" if m else ""
    settings = (f"If it is a training checkpoint whose saved settings hold that class (e.g. Lightning's "
                f"hyper_parameters), allow that class alone with --resstream-safe-globals {m.group(1)} "
                "(torch.serialization.add_safe_globals), or save only the weights: "
                "torch.save(checkpoint['state_dict'], path). If it is a whole model saved with torch.save(model), "
                "save") if m else "Save"
    return CheckpointError(
        f"Weights file {str(p)!r} holds pickled Python objects{what}, which torch's safe loader (weights_only=True) "
        f"refuses because unpickling can run arbitrary code. {settings} a state dict instead "
        f"(torch.save(model.state_dict(), path)), or, only if you trust the file, pass {TRUST_HINT}.")


def _torch_load(p: Path, fmt: str, trust_pickle: bool, safe_globals: tuple[str, ...] = ()) -> Any:
    import pickle

    cause: Exception
    try:
        return _load_with(p, trust_pickle, safe_globals)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise _refused_global(p, exc) from exc
        cause = exc
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on damaged files
        cause = exc
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
    kind = "zip-format" if fmt == "zip" else "legacy-format (torch < 1.6)"
    raise CheckpointError(f"Weights file {str(p)!r} could not be read by torch.load: a {kind} PyTorch file that is "
                          f"truncated or corrupt ({type(cause).__name__}: {first}). Download or save it "
                          "again.") from cause


def _is_state(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    import torch

    return all(isinstance(k, str) for k in obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, path: str, fmt: str) -> Checkpoint:
    import torch.nn as nn

    if isinstance(obj, nn.Module):
        return Checkpoint(obj, path, fmt)
    if _is_state(obj):
        return Checkpoint(dict(obj), path, fmt)
    if isinstance(obj, Mapping):
        _refuse_quantized(obj, path)
        found = [k for k in WRAPPER_KEYS if k in obj and (_is_state(obj[k]) or isinstance(obj[k], nn.Module))]
        others = tuple(k for k, v in obj.items() if k not in found and _is_state(v))
        if found:
            key = found[0]
            value = obj[key]
            return Checkpoint(value if isinstance(value, nn.Module) else dict(value), path, fmt, key=key,
                              unused=tuple(found[1:]) + others)
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise CheckpointError(f"Weights file {path!r} holds a dict without a state dict: its keys are {keys}; none "
                              f"is a state dict (names that are read: {', '.join(WRAPPER_KEYS)}). Save "
                              "model.state_dict(), or put it under one of those keys.")
    what = type(obj).__name__
    if isinstance(obj, (list, tuple)):
        what = f"a {what} of {len(obj)} items"
    raise CheckpointError(f"Weights file {path!r} holds {what}, not a state dict (a mapping of parameter names to "
                          "tensors). Save the model's weights with torch.save(model.state_dict(), path).")


def _refuse_quantized(obj: Mapping, path: str) -> None:
    """A quantized model's state dict (packed int8 weights) is no float checkpoint: say so, not 'no state dict'."""
    import torch

    for value in [obj] + [v for k, v in obj.items() if k in WRAPPER_KEYS and isinstance(v, Mapping)]:
        keys = [k for k in value if isinstance(k, str)]
        packed = [k for k in keys if "_packed_params" in k]
        quant = [k for k in keys if isinstance(value[k], torch.Tensor) and value[k].is_quantized]
        if packed or quant:
            raise CheckpointError(
                f"Weights file {path!r} holds a quantized model's state dict ({(packed or quant)[0]}, ...): packed "
                "integer weights, not the float weights the residual stream is measured on. Test the float model "
                "before quantization: torch.save(float_model.state_dict(), path).")


def _strip(state: dict, prefixes: Iterable[str]) -> tuple[dict, str]:
    stripped = ""
    again = True
    while again and state:
        again = False
        for pre in prefixes:
            if all(k.startswith(pre) for k in state):
                state = {k[len(pre):]: v for k, v in state.items()}
                stripped += pre
                again = True
    return state, stripped


def fit_prefix(state: dict, own_keys: Iterable[str]) -> tuple[dict, str]:
    """Strip the wrapper prefixes (``model.``, ...) from ``state`` when that makes more keys fit ``own_keys``.

    Example:
        >>> fit_prefix({"model.fc.weight": 1}, ["fc.weight"])
        ({'fc.weight': 1}, 'model.')
    """
    own = set(own_keys)
    best, best_prefix, best_fit = state, "", len(own & set(state))
    candidate, prefix = state, ""
    while True:
        pre = next((p for p in PREFIXES if candidate and all(k.startswith(p) for k in candidate)), None)
        if pre is None:
            return best, best_prefix
        candidate, prefix = {k[len(pre):]: v for k, v in candidate.items()}, prefix + pre
        fit = len(own & set(candidate))
        if fit > best_fit:
            best, best_prefix, best_fit = candidate, prefix, fit


def check_finite(tensors: Iterable[tuple[str, Any]], where: str) -> None:
    """Raise :class:`CheckpointError` naming every tensor that holds NaN or infinity.

    Example:
        >>> import torch
        >>> check_finite([("w", torch.tensor([1.0, float("nan")]))], "weights.pth")
        Traceback (most recent call last):
        ...
        resstream_assert.errors.CheckpointError: weights.pth holds non-finite values in 1 tensor: w (1 NaN of 2 values). A model with NaN or infinite weights gives no meaningful statistics (a diverged training run?): use an earlier checkpoint or fix the weights.
    """
    import torch

    bad = []
    for name, t in tensors:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
            continue
        finite = torch.isfinite(t)
        if bool(finite.all()):
            continue
        n_nan = int(torch.isnan(t).sum())
        n_inf = int((~finite).sum()) - n_nan
        what = " and ".join(x for x in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if x)
        bad.append(f"{name} ({what} of {t.numel()} values)")
    if bad:
        shown = ", ".join(bad[:5]) + (f", and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"{where} holds non-finite values in {len(bad)} tensor{'s' if len(bad) > 1 else ''}: "
                              f"{shown}. A model with NaN or infinite weights gives no meaningful statistics (a "
                              "diverged training run?): use an earlier checkpoint or fix the weights.")
