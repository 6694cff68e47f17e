"""Torch models: build an architecture (zoo, torchvision, timm, a user factory) and load its weights.

Weights files are read by :mod:`~resstream_assert.loading.checkpoint` (``weights_only=True``;
a pickled whole model needs ``trust_pickle=True`` and must be the architecture the spec names).
A factory is called once; whatever it raises becomes a :class:`ModelSpecError` naming it.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from resstream_assert.errors import CheckpointError, ModelSpecError
from resstream_assert.loading.checkpoint import PREFIXES, fit_prefix, read_checkpoint
from resstream_assert.loading.spec import LoadedModel, ModelSpec

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
        from resstream_assert import zoo
    except ImportError as exc:
        raise ModelSpecError(f"Model spec {spec.text!r}: the model_zoo package is not installed "
                             f"({exc}). Reinstall resstream_assert with 'pip install -e .'.") from exc
    entry = zoo.get(spec.target)  # raises ModelSpecError listing the known names
    module = entry.load()  # verifies the sha256 of the shipped weights
    return LoadedModel(spec=spec.text, name=f"zoo:{entry.name}", backend="torch", module=module,
                       input_size=entry.input_size, num_classes=entry.num_classes, digest="",
                       mean=tuple(entry.mean), std=tuple(entry.std), class_names=tuple(entry.class_names),
                       source="zoo", input_size_source="model card", normalisation_source="zoo card")


def load_torch(spec: ModelSpec, *, trust_pickle: bool, safe_globals: tuple[str, ...] = ()) -> LoadedModel:
    """A torchvision / timm / factory architecture, with its weights when the spec names a file.

    The weights file is read by content (:mod:`~resstream_assert.loading.checkpoint`); a trusted,
    pickled whole model must be the architecture the spec names. ``LoadedModel.weights`` says
    which key and prefix of the file were used.

    Example:
        >>> load_torch(ModelSpec.parse("torchvision:resnet18"), trust_pickle=False).num_classes  # doctest: +SKIP
        1000
    """
    ckpt = read_checkpoint(spec.weights, trust_pickle=trust_pickle, safe_globals=safe_globals) if spec.weights \
        else None
    if ckpt is not None and not isinstance(ckpt.state, dict):  # a trusted, pickled whole model
        module = ckpt.state
        _check_pickled(module, spec)
    else:
        state = ckpt.state if ckpt is not None else None
        n_cls = _infer_num_classes(state) if state is not None else None
        module = _build(spec, {"num_classes": n_cls} if n_cls else {})
        if ckpt is not None and spec.weights:
            state, more = fit_prefix(ckpt.state, module.state_dict().keys())
            ckpt.prefix += more
            _load_state(module, state, spec.weights)
    size, why = _default_input_size(spec, module)
    n_out = _infer_num_classes(dict(module.state_dict())) or 1000
    return LoadedModel(spec=spec.text, name=replace(spec, control=None).label, backend="torch", module=module,
                       # normalisation: ImageNet's (LoadedModel's default), what torchvision's and timm's weights
                       # expect; another is --resstream-mean/--resstream-std (applied by pipeline.load_model).
                       input_size=size, num_classes=n_out, digest="", source=spec.kind, input_size_source=why,
                       weights=ckpt.describe() if ckpt is not None else None)


def _default_input_size(spec: ModelSpec, module) -> tuple[int, str]:
    """The input size the architecture documents (timm: its pretrained config; torchvision: 224), and why.

    A factory's size is not known here: 224 with the source ``"default"``, which
    :func:`resstream_assert.pipeline.load_model` replaces by a size read from the model's stem.
    """
    if spec.kind == "timm":
        cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if size:
            return int(size[-1]), "timm pretrained_cfg"
    if spec.kind in ("timm", "torchvision"):
        return 224, f"{spec.kind} ImageNet architecture"
    return 224, "default"


def _factory_kwargs(factory, kwargs: dict) -> dict:
    """``kwargs`` if the factory accepts them (a ``num_classes`` parameter or ``**kwargs``), else none."""
    import inspect

    if not kwargs:
        return {}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins and some C-extension callables have no signature
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params) or all(k in {p.name for p in params} for k in kwargs):
        return kwargs
    return {}


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
        return _call(lambda: tvm.get_model(spec.target, weights=None, **kwargs), spec, "torchvision.models.get_model")
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
        return _call(lambda: timm.create_model(spec.target, pretrained=False, **kwargs), spec, "timm.create_model")
    from resstream_assert.loading.factory import find_factory

    factory = find_factory(spec)  # a module from the import path or the current folder, or a .py file
    torch.manual_seed(0)
    call_kwargs = _factory_kwargs(factory, kwargs)
    module = _call(lambda: factory(**call_kwargs), spec, f"{spec.target}({', '.join(f'{k}={v}' for k, v in call_kwargs.items())})")
    if not isinstance(module, nn.Module):
        raise ModelSpecError(f"Factory {spec.target!r} returned {type(module).__name__}, not a torch.nn.Module. "
                             "Make it return the model (an nn.Module).")
    return module


def _call(build, spec: ModelSpec, what: str):
    """Run a model builder once; its exception becomes a ModelSpecError that names it (the cause is chained)."""
    try:
        return build()
    except ModelSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - a user's factory may raise anything
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelSpecError(f"Building the model of spec {spec.text!r} failed: {what} raised {type(exc).__name__}: "
                             f"{first}. Fix the factory or the arguments it is given "
                             "(a factory must build the model with no arguments, or with num_classes=N).") from exc


def read_weights(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """Read a state dict from a weights file (torch zip or legacy format, or safetensors, by content), on CPU.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}``, ``{"net": ...}``, ... and strips
    ``module.`` / ``_orig_mod.`` prefixes (:func:`~resstream_assert.loading.checkpoint.read_checkpoint`
    also says which were used). With ``trust_pickle=True`` a pickled whole ``nn.Module`` is returned as is.

    Example:
        >>> sd = read_weights("weights.pth")  # doctest: +SKIP
    """
    return read_checkpoint(path, trust_pickle=trust_pickle).state


def _infer_num_classes(state: dict | None) -> int | None:
    if not state:
        return None
    for pre in ("",) + PREFIXES:
        for key in _CLASSIFIER_KEYS:
            w = state.get(pre + key)
            if w is not None and getattr(w, "ndim", 0) == 2:
                return int(w.shape[0])
    return None


def _differences(own: dict, state: dict) -> list[str]:
    # BatchNorm fills a missing num_batches_tracked itself (checkpoints of torch < 0.4.1): not a difference.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
    return parts


def _load_state(module, state: dict, path: str) -> None:
    """``module.load_state_dict(state, strict=True)``: whatever torch accepts is accepted; a real mismatch
    is a :class:`CheckpointError` listing the differing keys and shapes."""
    parts = _differences(module.state_dict(), state)
    if not parts:
        try:
            module.load_state_dict(state, strict=True)
            return
        except RuntimeError as exc:
            parts = [(str(exc).strip().splitlines() or ["load_state_dict failed"])[0][:300]]
    raise CheckpointError(f"Weights file {path!r} does not fit the architecture: {'; '.join(parts)}. "
                          f"{_prefix_hint(module.state_dict(), state)}"
                          "Check that the spec names the architecture the checkpoint was trained with.")


def _prefix_hint(own: dict, state: dict) -> str:
    """When the model's keys are in the file under a wrapper prefix (``model.``: Lightning) beside other keys
    (a loss's ``criterion.weight``), say so: the prefix is stripped only when every key has it."""
    for pre in PREFIXES:
        inner = {k[len(pre):] for k in state if k.startswith(pre)}
        extra = sorted(k for k in state if not k.startswith(pre))
        if extra and inner and len(inner & set(own)) >= 0.9 * len(own):
            return (f"The model's keys are there under the prefix {pre!r} (a wrapper such as a Lightning module), "
                    f"beside {len(extra)} key(s) that are not the model's ({', '.join(extra[:3])}), so the prefix "
                    f"was not stripped: save the model's own state dict (torch.save(module.{pre.rstrip('.')}"
                    ".state_dict(), path)), or drop those keys. ")
    return ""


def _check_pickled(module, spec: ModelSpec) -> None:
    """A trusted pickled model must be the architecture its spec names (same class, keys and shapes)."""
    import torch.nn as nn

    if not isinstance(module, nn.Module):
        raise CheckpointError(f"Weights file {spec.weights!r} holds a pickled {type(module).__name__}, not a model.")
    own = module.state_dict()
    n_cls = _infer_num_classes(dict(own))
    ref = _build(spec, {"num_classes": n_cls} if n_cls else {})
    parts = _differences(ref.state_dict(), dict(own))
    if type(ref).__name__ != type(module).__name__ or parts:
        detail = f": {'; '.join(parts)}" if parts else ""
        raise CheckpointError(
            f"Weights file {spec.weights!r} holds a pickled {type(module).__name__} ({type(module).__module__}), "
            f"which is not the architecture the spec names ({spec.target}, a {type(ref).__name__}){detail}. Name "
            "the architecture the model was saved from in the spec, or save and load its state dict instead.")


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


@contextmanager
def eval_mode(module):
    """Put ``module`` in eval mode for the ``with`` block, then give every submodule back its own mode.

    The package reads models in eval mode but never leaves a user's model switched.

    Example:
        >>> import torch
        >>> m = torch.nn.BatchNorm1d(2).train()
        >>> with eval_mode(m):
        ...     m.training
        False
        >>> m.training
        True
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
