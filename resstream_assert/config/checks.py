"""Value checks of the options: each takes a value (``None`` = unset) and returns ``""`` or what is wrong.

The :data:`~resstream_assert.config.OPTIONS` table names one per option; a check that needs
torch or onnxruntime imports it only when a value asks (a CUDA device, a provider list).

Example:
    >>> positive(0), positive(3), open_unit(2.0)
    ('must be a positive whole number', '', 'must be strictly between 0 and 1 (e.g. 0.05)')
    >>> shard("3/2")
    'must be I/N with 1 <= I <= N, e.g. 2/4 (this job runs the 2nd of 4 shards of the model list)'
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from resstream_assert.kinds import Backend, Engine, Resize, Stimuli, Storage, values

STIMULI = values(Stimuli)


def positive(v: Any) -> str:
    return "" if v is None or v >= 1 else "must be a positive whole number"


def non_negative(v: Any) -> str:
    return "" if v is None or v >= 0 else "must be 0 or a positive whole number"


def open_unit(v: Any) -> str:
    return "" if v is None or 0 < v < 1 else "must be strictly between 0 and 1 (e.g. 0.05)"


def fraction(v: Any) -> str:
    return "" if v is None or 0 < v <= 1 else "must be a fraction in (0, 1] (e.g. 0.5, or 1.0 for every block)"


def finite_non_negative(v: Any) -> str:
    return "" if v is None or (math.isfinite(v) and v >= 0) else "must be a finite number >= 0"


def min_effects(v: Any) -> str:
    """Per-claim minimum effects: well formed, and naming claims that exist and have a boundary."""
    if not v:
        return ""
    from resstream_assert.claims import REGISTRY, claim_order, parse_min_effects  # only when used: numpy stays unimported

    try:
        pairs = parse_min_effects(v)
    except (TypeError, ValueError) as exc:
        return str(exc)

    for claim, _ in pairs:
        if claim not in REGISTRY:
            return f"unknown claim {claim!r} (known: {', '.join(claim_order(REGISTRY))})"
        if REGISTRY[claim].boundary is None:
            return f"{claim} has no minimum effect (it checks a reference value, not an effect size)"
    return ""


def resamples(v: Any) -> str:
    return "" if v is None or v >= 99 else "must be at least 99 (the smallest permutation p-value is 1/(N+1))"


def device(v: Any) -> str:
    return "" if v is None or re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(v)) else "must be cpu, cuda, cuda:N or mps"


def shard(v: Any) -> str:
    if v is None:
        return ""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(v))
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        return "must be I/N with 1 <= I <= N, e.g. 2/4 (this job runs the 2nd of 4 shards of the model list)"
    return ""


def engine(v: Any) -> str:
    return "" if v is None or v in values(Engine) else "must be auto, torch or onnxruntime"


def storage(v: Any) -> str:
    return "" if v is None or v in values(Storage) else "must be auto, float16 or float32"


def stimuli(v: Any) -> str:
    return "" if v is None or v in STIMULI else f"must be one of {', '.join(STIMULI)}"


def regime(v: Any) -> str:
    return "" if v is None or v in ("block", "per-layer") else "must be block (one jitter per block) or per-layer " \
        "(the papers' table, W5)"


#: The image sides feature visualization can optimise (the bounds of ``FeatvizSettings.check``): below 8 px a
#: jittered, transformed image has no content; above 1024 px one image takes gigabytes (30000 px: 10 GB).
FEATVIZ_SIZES = (8, 1024)
#: Most re-evaluations ``--resstream-stability`` runs (each one evaluates every response-only claim again).
STABILITY_MAX_RUNS = 1000


def featviz_size(v: Any) -> str:
    low, high = FEATVIZ_SIZES
    return "" if v is None or low <= v <= high else f"must be from {low} to {high} px (default: the model's input size)"


def stability(v: Any) -> str:
    """0 (off), or enough re-evaluations that 0 flips bounds the flip rate below the instability threshold."""
    if v is None or v == 0:
        return ""
    if v < 0:
        return "must be 0 or a positive whole number"
    low = stability_min_runs()
    if not low <= v <= STABILITY_MAX_RUNS:
        return (f"must be 0 (off) or from {low} to {STABILITY_MAX_RUNS}: with fewer runs even 0 flips leaves the "
                f"flip rate's 95% CI above the instability threshold, so 'stable' would claim what the runs cannot "
                f"show (e.g. {low})")
    return ""


def stability_min_runs() -> int:
    """The fewest re-evaluations whose 0 flips put the Clopper-Pearson 95% upper bound of the flip rate at or
    below the instability threshold: ``1 - 0.025 ** (1 / n) <= threshold``.

    Example:
        >>> stability_min_runs()
        36
    """
    threshold = 0.10  # resstream_assert.claims.verdict_stability.STABILITY_THRESHOLD (tested to agree; numpy-free here)
    return math.ceil(math.log(0.025) / math.log(1.0 - threshold))


def claims(v: Any) -> str:
    """Claim ids, comma-separated, that the registry knows (imported only when some are named)."""
    if not v:
        return ""
    from resstream_assert.claims import resolve_claims

    try:
        resolve_claims([c for c in str(v).split(",") if c.strip()])
    except ValueError as exc:
        return str(exc)
    return ""


def class_names(v: Any) -> str:
    bad = [x for x in (v or ()) if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", str(x))]
    return f"{bad[0]!r} is not a class name: give module.Class, e.g. argparse.Namespace" if bad else ""


def positive_float(v: Any) -> str:
    return "" if v is None or (math.isfinite(v) and v > 0) else "must be a finite number > 0"


def backends(v: Any) -> str:
    bad = [b for b in (v or ()) if b not in values(Backend)]
    return (f"unknown backend {', '.join(map(str, bad))}: use torch or onnx (an ONNX file runs on onnx; a torch "
            "model can run on both)") if bad else ""


def device_available(v: Any) -> str:
    """A CUDA/MPS device must exist on this machine (torch is imported only to ask)."""
    if v is None or str(v) == "cpu" or device(v):
        return ""
    import torch

    if str(v).startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(str(v).partition(":")[2] or 0)
        if index >= n:
            have = "no usable CUDA device" if n == 0 else f"CUDA devices cuda:0 to cuda:{n - 1} only"
            return f"this machine has {have}: use --resstream-device cpu, or run where that GPU is"
    elif str(v) == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine: use --resstream-device cpu"
    return ""


def providers(v: Any) -> str:
    """onnxruntime execution providers this machine's onnxruntime build has (imported only when some are named)."""
    names = [x for x in str(v or "").split(",") if x.strip()]
    if not names:
        return ""
    from resstream_assert.errors import BackendUnavailable
    from resstream_assert.loading.ort_session import resolve_providers

    try:
        resolve_providers(names)
    except BackendUnavailable as exc:
        return str(exc)
    return ""


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _can_create_in(folder: Path) -> bool:
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".resstream-check-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def writable_file(v: Any) -> str:
    """A report file: not a directory, and writable (or creatable, with its folders)."""
    if v is None:
        return ""
    p = Path(str(v)).expanduser()
    if p.is_dir():
        return "is a directory: give the path of the file to write (e.g. a name inside that folder)"
    if p.exists():
        if _not_system(p):  # before opening it: a symlink to a system file is not touched
            return _not_system(p)
        try:
            with open(p, "a"):
                pass
        except OSError as exc:
            return f"cannot be written ({exc.strerror}): give a writable path"
        return ""
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        return f"cannot be created: {base} is a file, not a folder; give a path in a folder"
    if not _can_create_in(base):
        return f"cannot be created: the folder {base} is not writable; give a writable path"
    return _not_system(p)


def _not_system(p: Path) -> str:
    from resstream_assert.paths import system_location

    why = system_location(p)
    return f"{why}: a run never writes there; give a path in a project or temporary folder" if why else ""


def writable_dir(v: Any) -> str:
    """A folder to write into: an existing, writable folder, or one that can be created."""
    if v is None:
        return ""
    p = Path(str(v)).expanduser()
    if p.exists() and not p.is_dir():
        return "is a file, not a folder: give a folder path (it is created if missing)"
    if p.exists() and _not_system(p):  # wherever a symlink points: never written into (as root it could be)
        return _not_system(p)
    base = p if p.exists() else _nearest_existing(p.parent)
    if not base.is_dir():
        return f"cannot be created: {base} is a file, not a folder; give another folder"
    if not _can_create_in(base):
        return f"is not writable ({base}): give a writable folder"
    return _not_system(p)


def probe_dir(v: Any) -> str:
    if v is None or str(v) == "embedded":
        return ""
    from resstream_assert.stimuli.probe import SHIPPED  # only when a probe is named: numpy stays unimported

    if str(v) in SHIPPED:
        return ""
    p = Path(str(v)).expanduser()
    if not p.exists():
        return (f"does not exist: give a folder of images (class subfolders or a flat folder), a shipped probe set "
                f"({', '.join(SHIPPED)}), or leave it unset")
    if not p.is_dir():
        return "is a file, not a folder: give the folder that holds the images"
    return ""


def _three_numbers(v: Any, example: str) -> str:
    if len(v) != 3:
        return f"must be 3 numbers, one per colour channel (red, green, blue), e.g. {example}"
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
        return f"must be 3 finite numbers, e.g. {example}"
    return ""


def norm_mean(v: Any) -> str:
    """The per-channel mean a model's inputs are normalised with, in the units of images in [0, 1]."""
    if v is None:
        return ""
    why = _three_numbers(v, "0.4914 0.4822 0.4465")
    if not why and not all(0 <= x <= 1 for x in v):
        why = ("must lie in [0, 1], the range of the images; values in 0-255 units (e.g. 125.3) are divided by 255 "
               "first (0.4914)")
    return why


def norm_std(v: Any) -> str:
    """The per-channel standard deviation a model's inputs are divided by, in the units of images in [0, 1]."""
    if v is None:
        return ""
    why = _three_numbers(v, "0.2470 0.2435 0.2616")
    if not why and not all(0 < x <= 1 for x in v):
        why = ("must be > 0 and at most 1 (images are in [0, 1]); values in 0-255 units (e.g. 63.0) are divided by "
               "255 first (0.2470)")
    return why


def resize(v: Any) -> str:
    return "" if v is None or v in values(Resize) else "must be crop (shorter side to the input size, then the " \
        "centre square: torchvision's eval transforms) or stretch (the whole image resized to the square)"


def class_index(v: Any) -> str:
    """A class-index file that reads (checked before any model is loaded)."""
    if v is None:
        return ""
    from resstream_assert.errors import ProbeError
    from resstream_assert.stimuli.class_index import read_class_index

    try:
        read_class_index(str(v))
    except ProbeError as exc:  # the message names the file; the option's name and value come before it
        text, named = str(exc), f"class-index file {Path(str(v)).expanduser()}"
        return text[len(named):].lstrip(": ") if text.startswith(named) else text
    return ""
