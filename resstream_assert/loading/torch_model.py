"""Torch models: build an architecture (zoo, torchvision, timm, a user factory) and read its weights.

Weights load with ``weights_only=True``; a pickled whole model needs ``trust_pickle=True``.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

from resstream_assert.errors import CheckpointError, ModelSpecError
from resstream_assert.loading.spec import LoadedModel, ModelSpec

_WEIGHT_SUFFIXES = (".pth", ".pt", ".th", ".bin", ".safetensors")
# Keys of the final classifier, used to infer num_classes from a checkpoint.
_CLASSIFIER_KEYS = ("fc.weight", "head.fc.weight", "classifier.2.weight", "classifier.weight",
                    "linear.weight", "head.weight")


def load_zoo(spec: ModelSpec) -> LoadedModel:
    """A model shipped in ``model_zoo`` (its sha256 verified on load).

    Example:
        >>> load_zoo(ModelSpec.parse("zoo:resnet18-synth96")).input_size  # doctest: +SKIP
        96
    """
    try:
        import model_zoo
    except ImportError as exc:
        raise ModelSpecError(f"Model spec {spec.text!r}: the model_zoo package is not installed "
                             f"({exc}). Reinstall resstream_assert with 'pip install -e .'.") from exc
    entry = model_zoo.get(spec.target)  # raises ModelSpecError listing the known names
    module = entry.load()  # verifies the sha256 of the shipped weights
    return LoadedModel(spec=spec.text, name=f"zoo:{entry.name}", backend="torch", module=module,
                       input_size=entry.input_size, num_classes=entry.num_classes, digest="",
                       mean=tuple(entry.mean), std=tuple(entry.std), class_names=tuple(entry.class_names),
                       meta={"source": "zoo", "sha256": entry.sha256, "accuracy": entry.accuracy})


def load_torch(spec: ModelSpec, *, trust_pickle: bool) -> LoadedModel:
    """A torchvision / timm / factory architecture, with its weights when the spec names a file.

    Example:
        >>> load_torch(ModelSpec.parse("torchvision:resnet18"), trust_pickle=False).num_classes  # doctest: +SKIP
        1000
    """
    state = read_weights(spec.weights, trust_pickle=trust_pickle) if spec.weights else None
    if state is not None and not isinstance(state, dict):  # a trusted, pickled whole model
        module = state
    else:
        kwargs = {}
        n_cls = _infer_num_classes(state) if state is not None else None
        if n_cls:
            kwargs["num_classes"] = n_cls
        module = _build(spec, kwargs)
        if state is not None:
            _load_state(module, state, spec.weights)
    n_out = _infer_num_classes(dict(module.state_dict())) or 1000
    return LoadedModel(spec=spec.text, name=spec.text.split("+")[0], backend="torch", module=module,
                       input_size=224, num_classes=n_out, digest="", meta={"source": spec.kind})


def _build(spec: ModelSpec, kwargs: dict):
    import torch
    import torch.nn as nn

    if spec.kind == "torchvision":
        import torchvision.models as tvm

        if spec.target not in tvm.list_models():
            import difflib

            close = difflib.get_close_matches(spec.target, tvm.list_models(), n=6, cutoff=0.6)
            raise ModelSpecError(f"Unknown torchvision architecture {spec.target!r} in spec {spec.text!r}. "
                                 f"Similar names: {', '.join(close) or 'none'}; see torchvision.models.list_models().")
        torch.manual_seed(0)  # random-init models must be the same model on every load (cache keys, verdicts)
        return tvm.get_model(spec.target, weights=None, **kwargs)
    if spec.kind == "timm":
        try:
            import timm
        except ImportError as exc:
            raise ModelSpecError(f"Spec {spec.text!r} needs timm, which is not installed. "
                                 "Install it with: pip install 'resstream_assert[timm]'.") from exc
        if not timm.is_model(spec.target):
            raise ModelSpecError(f"Unknown timm architecture {spec.target!r} in spec {spec.text!r}; "
                                 "see timm.list_models('*resnet*').")
        torch.manual_seed(0)
        return timm.create_model(spec.target, pretrained=False, **kwargs)
    module_name, _, attr = spec.target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelSpecError(f"Cannot import factory {spec.target!r} from spec {spec.text!r} ({exc}). "
                             "It must be an importable 'package.module:callable' returning an nn.Module.") from exc
    torch.manual_seed(0)
    try:
        module = factory(**kwargs)
    except TypeError:
        module = factory()
    if not isinstance(module, nn.Module):
        raise ModelSpecError(f"Factory {spec.target!r} returned {type(module).__name__}, not a torch.nn.Module.")
    return module


def read_weights(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """Read a state dict from ``.pth/.pt/.th/.bin`` (torch) or ``.safetensors``, on CPU.

    Unwraps ``{"state_dict": ...}`` and ``{"model": ...}`` and strips a ``module.`` prefix.
    With ``trust_pickle=True`` a pickled whole ``nn.Module`` is returned as is.

    Example:
        >>> sd = read_weights("weights.pth")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"Weights file {str(p)!r} does not exist. Check the path after '@' in the model spec "
                              "(relative paths are taken from the current directory).")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"Weights file {str(p)!r} is not a readable safetensors file ({exc}). "
                                  "It may be truncated or corrupt: download or export it again.") from exc
    else:
        state = _torch_load(p, trust_pickle)
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
        if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _torch_load(p: Path, trust_pickle: bool) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(p), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Weights file {str(p)!r} holds pickled Python objects (probably a whole model saved with "
            "torch.save(model)), which are refused because unpickling can run arbitrary code. Save a state dict "
            "instead (torch.save(model.state_dict(), path)), or, only if you trust the file, pass "
            "--resstream-trust-pickle (trust_pickle=True in Python).") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"Weights file {str(p)!r} could not be read by torch.load ({exc}). "
                              "It may be truncated, corrupt, or not a PyTorch file.") from exc


def _infer_num_classes(state: dict | None) -> int | None:
    if not state:
        return None
    for key in _CLASSIFIER_KEYS:
        w = state.get(key)
        if w is not None and getattr(w, "ndim", 0) == 2:
            return int(w.shape[0])
    return None


def _load_state(module, state: dict, path: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise CheckpointError(f"Weights file {path!r} does not fit the architecture: {'; '.join(parts)}. "
                              "Check that the spec names the architecture the checkpoint was trained with.")
    module.load_state_dict(state, strict=True)


def weights_digest(module, extra: str = "") -> str:
    """sha256 over parameter and buffer bytes in name order (plus ``extra``), for cache keys.

    Example:
        >>> import torch
        >>> len(weights_digest(torch.nn.Linear(2, 2)))
        64
    """
    h = hashlib.sha256(extra.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
