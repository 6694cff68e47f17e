"""onnxruntime sessions: execution providers, thread counts, and a small cache of open sessions.

Loading an ONNX file opens its plain session (so an unreadable graph or an unavailable
provider is an error at load time, with the provider that really runs recorded), and
capture opens instrumented ones; both go through :func:`new_session`, which refuses a
silent fallback from an explicitly requested provider. Sessions are cached per model
digest and providers, with ``intra_op_num_threads`` = CPUs / pytest-xdist workers so
parallel workers do not oversubscribe the machine.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from resstream_assert.errors import BackendUnavailable, CheckpointError

__all__ = ["resolve_providers", "ort_threads", "new_session", "remember", "cached", "plain_session",
           "provider_report"]

_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
            "rocm": "ROCMExecutionProvider", "dml": "DmlExecutionProvider", "coreml": "CoreMLExecutionProvider",
            "openvino": "OpenVINOExecutionProvider"}
_SESSIONS: "OrderedDict[tuple, object]" = OrderedDict()  # (digest, providers, kind...) -> session (+ plan)
_CACHE_LIMIT = 6




def resolve_providers(requested: Iterable[str] = ()) -> tuple[tuple[str, ...], bool]:
    """The provider list to ask onnxruntime for, and whether the user asked explicitly.

    Short names (``cpu``, ``cuda``, ``tensorrt``, ...) are accepted. Without a request: CUDA
    first when this onnxruntime build has it, then CPU. An explicit provider this build
    does not have raises :class:`BackendUnavailable` (onnxruntime itself would only warn).

    Example:
        >>> resolve_providers(["cpu"])
        (('CPUExecutionProvider',), True)
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    names = tuple(_ALIASES.get(p.strip().lower(), p.strip()) for p in requested if p and p.strip())
    if not names:
        return tuple(p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available), False
    missing = [p for p in names if p not in available]
    if missing:
        raise BackendUnavailable(
            f"onnxruntime execution provider(s) {', '.join(missing)} requested (--resstream-providers), but this "
            f"onnxruntime {ort.__version__} build offers only {', '.join(available)}. Install the matching build "
            "(e.g. onnxruntime-gpu for CUDA) or drop the option to run on CPU.")
    return names, True


def ort_threads() -> int:
    """Intra-op threads per session: ``$RESSTREAM_ORT_THREADS``, else the CPUs divided among xdist workers.

    Example:
        >>> ort_threads() >= 1
        True
    """
    env = os.environ.get("RESSTREAM_ORT_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    return max(1, cpus // workers)


def _options(level=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ORT's warnings (unused initializers, ...) are not the user's business
    opts.intra_op_num_threads = ort_threads()
    opts.inter_op_num_threads = 1
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1) > 1:
        # Spinning threads burn the cores other xdist workers need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = level if level is not None else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def new_session(source, providers: tuple[str, ...], explicit: bool, path: str):
    import onnxruntime as ort

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the fallback warning; checked explicitly below
            sess = ort.InferenceSession(source, _options(), providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        msg = str(exc)
        if "opset" in msg.lower():
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} cannot run {path!r}: its opset is not supported ({msg[-300:]}). "
                "Upgrade onnxruntime, or export the model again with an older opset "
                "('resstream export SPEC OUT.onnx --opset 18').") from exc
        raise CheckpointError(f"onnxruntime cannot load {path!r} ({type(exc).__name__}: {msg[:400]}). The file may be "
                              "truncated or corrupt, or use operators this onnxruntime does not implement; export it "
                              "again.") from exc
    used = tuple(sess.get_providers())
    if explicit:
        dropped = [p for p in providers if p not in used]
        if dropped:
            raise BackendUnavailable(
                f"onnxruntime was asked for {', '.join(providers)} for {path!r} but the session runs on "
                f"{', '.join(used)} ({', '.join(dropped)} failed to initialise and onnxruntime fell back silently). "
                "Check the CUDA/cuDNN installation, or drop --resstream-providers to run on CPU.")
    return sess


def remember(key: tuple, value):
    _SESSIONS[key] = value
    _SESSIONS.move_to_end(key)
    while len(_SESSIONS) > _CACHE_LIMIT:
        _SESSIONS.popitem(last=False)
    return value


def cached(key: tuple):
    """The cached session (or session + plan) under ``key``, or ``None``."""
    if key in _SESSIONS:
        _SESSIONS.move_to_end(key)
        return _SESSIONS[key]
    return None


def plain_session(path: str | Path, digest: str, providers: Iterable[str] = ()):
    """The un-instrumented onnxruntime session of an ONNX file (cached per file digest and providers).

    Example:
        >>> sess = plain_session("resnet18.onnx", digest, ["cpu"])  # doctest: +SKIP
        >>> sess.get_providers()  # doctest: +SKIP
        ['CPUExecutionProvider']
    """
    names, explicit = resolve_providers(providers)
    key = (digest, names, "plain")
    hit = cached(key)
    return hit if hit is not None else remember(key, new_session(str(path), names, explicit, str(path)))


def provider_report(providers: Iterable[str] = ()) -> str:
    """One line for the pytest header: the onnxruntime version and the providers a session really gets.

    Example:
        >>> provider_report(["cpu"]).startswith("onnxruntime ")
        True
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    try:
        names, explicit = resolve_providers(providers)
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        used = new_session(model.SerializeToString(), names, explicit, "<provider probe>").get_providers()
        return f"onnxruntime {ort.__version__}: providers {', '.join(used)} (threads {ort_threads()})"
    except BackendUnavailable as exc:
        return f"onnxruntime {ort.__version__}: providers unavailable: {exc}"
