"""Can a run be compared with a baseline at all? The same model, blocks, probe images and settings.

A baseline comparison matches results by (model, backend, claim) and block name. A baseline of
another architecture, another probe set or other thresholds would still be "compared": its
blocks count as missing and a claim-level verdict may match by chance, so the gate would pass
on numbers that were never comparable. :func:`incompatibilities` names every such difference
before anything is compared; the pytest plugin and ``resstream report merge`` refuse to gate
on them. Only a different probe size can be allowed (``allow_probe_size``), and it is then
stated as a note in the comparison.

Each report carries ``model_info``: per ``model[backend]``, what the model was (architecture,
block list, input size) and which probe images it saw (digest and count). Stdlib only.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from resstream_assert.formatting import fnorm
from resstream_assert.keys import model_label

__all__ = ["describe_model", "incompatibilities", "refusal", "CONFIG_KEYS", "PROBE_SIZE_FLAG"]

#: Settings that change the numbers or the verdicts: a baseline made under others is not comparable.
CONFIG_KEYS = ("images", "input_size", "seed", "claims", "claim_options", "stimuli", "channels", "featviz")
#: The option that allows a baseline made at another probe size, as the pytest plugin spells it.
PROBE_SIZE_FLAG = "--resstream-allow-probe-size"


def describe_model(architecture: str, loaded: Any, rmap: Any, probe: Any) -> dict[str, Any]:
    """The ``model_info`` entry of one model on one backend: architecture (``ModelSpec.architecture``), blocks,
    input size, probe images.

    Example:
        >>> describe_model("zoo:cifar-resnet20-synth32", loaded, rmap, probe)["blocks"][:1]  # doctest: +SKIP
        [['layer1.0', 16]]
    """
    return {"architecture": architecture, "input_size": int(loaded.input_size),
            "blocks": [[str(b.name), int(b.channels)] for b in rmap],
            "probe": str(probe.digest), "images": int(len(probe)),
            "normalisation": {"mean": [float(v) for v in loaded.mean], "std": [float(v) for v in loaded.std],
                              "source": str(loaded.normalisation_source or "unknown")}}


def _config_differences(base: Mapping[str, Any], now: Mapping[str, Any], allow_probe_size: bool) -> list[str]:
    out = []
    for key in CONFIG_KEYS:
        b, n = base.get(key), now.get(key)
        if b == n or (key == "images" and allow_probe_size):
            continue
        if isinstance(b, Mapping) and isinstance(n, Mapping):
            for sub in sorted(set(b) | set(n)):
                if b.get(sub) != n.get(sub):
                    out.append(f"{key}.{sub}: baseline {b.get(sub)!r}, this run {n.get(sub)!r}")
        else:
            out.append(f"{key}: baseline {b!r}, this run {n!r}")
    return out


def _model_differences(label: str, b: Mapping[str, Any], n: Mapping[str, Any], allow_probe_size: bool) -> list[str]:
    out = []
    if b.get("architecture") != n.get("architecture"):
        out.append(f"{label}: model {n.get('architecture')}, the baseline's is {b.get('architecture')}")
    bb, nb = [tuple(x) for x in b.get("blocks") or []], [tuple(x) for x in n.get("blocks") or []]
    if bb != nb:
        only_b = [f"{x[0]} ({x[1]} ch)" for x in bb if x not in nb][:3]
        only_n = [f"{x[0]} ({x[1]} ch)" for x in nb if x not in bb][:3]
        out.append(f"{label}: block list differs ({len(nb)} blocks, the baseline's {len(bb)}; only in the baseline: "
                   f"{', '.join(only_b) or '-'}; only in this run: {', '.join(only_n) or '-'})")
    bn, nn_ = b.get("normalisation"), n.get("normalisation")  # absent from baselines written before it was recorded
    if bn and nn_ and (bn.get("mean"), bn.get("std")) != (nn_.get("mean"), nn_.get("std")):
        out.append(f"{label}: normalisation {fnorm(nn_)}, the baseline's {fnorm(bn)}")
    if b.get("input_size") != n.get("input_size"):
        out.append(f"{label}: input size {n.get('input_size')} px, the baseline's {b.get('input_size')} px")
    same_count = b.get("images") == n.get("images")
    if not same_count and not allow_probe_size:
        out.append(f"{label}: {n.get('images')} probe images, the baseline's {b.get('images')}")
    elif same_count and b.get("probe") != n.get("probe"):
        out.append(f"{label}: other probe images (digest {str(n.get('probe'))[:12]}, the baseline's "
                   f"{str(b.get('probe'))[:12]})")
    return out


def incompatibilities(baseline: Mapping[str, Any], current: Mapping[str, Any], pairs: Mapping[tuple[str, str], str],
                      *, allow_probe_size: bool = False) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` of comparing ``current`` with ``baseline`` (report dicts with ``config`` and
    ``model_info``). ``pairs`` maps each current (model, backend label) to the baseline model it is compared
    with. A problem refuses the comparison; a note is stated in it (a probe size allowed, a side that carries
    no ``model_info``).

    Example:
        >>> base = {"config": {"images": 64}, "results": []}
        >>> incompatibilities(base, {"config": {"images": 128}}, {})[0]
        ['images: baseline 64, this run 128']
        >>> incompatibilities(base, {"config": {"images": 128}}, {}, allow_probe_size=True)[1][0][:44]
        'note: the baseline was made with 64 probe im'
    """
    bcfg, ncfg = baseline.get("config") or {}, current.get("config") or {}
    problems = _config_differences(bcfg, ncfg, allow_probe_size)
    notes = []
    if allow_probe_size and bcfg.get("images") != ncfg.get("images"):
        notes.append(f"note: the baseline was made with {bcfg.get('images')} probe images, this run with "
                     f"{ncfg.get('images')} ({PROBE_SIZE_FLAG}): quantities and verdicts are compared across probe "
                     "sizes, so some differences are sampling error")
    binfo, ninfo = baseline.get("model_info") or {}, current.get("model_info") or {}
    if ninfo and not binfo:
        notes.append("note: the baseline carries no model description (written by an older resstream_assert), so "
                     "its architecture, blocks and probe images were not checked; write it again with "
                     "--resstream-update-baseline")
    for (model, backend), base_model in sorted(pairs.items()) if binfo and ninfo else ():
        b, n = binfo.get(model_label(base_model, backend)), ninfo.get(model_label(model, backend))
        if b is not None and n is not None:
            problems += _model_differences(model_label(model, backend), b, n, allow_probe_size)
    return problems, notes


def refusal(problems: Iterable[str], baseline_path: str, flag: str = PROBE_SIZE_FLAG) -> str:
    """The message that refuses a comparison: every difference, and what to do.

    Example:
        >>> print(refusal(["images: baseline 64, this run 128"], "b.json"))  # doctest: +ELLIPSIS
        this run cannot be compared with the baseline b.json: it was made from another model or under other settings
          images: baseline 64, this run 128
        ...
    """
    lines = "\n".join(f"  {p}" for p in problems)
    return (f"this run cannot be compared with the baseline {baseline_path}: it was made from another model or under "
            f"other settings\n{lines}\nRun with the baseline's settings, or write a baseline for this model and these "
            f"settings with --resstream-update-baseline (only another probe size can be allowed, with {flag}).")
