"""The report header of a run that tests models: package versions, the run's settings, and per model
its input size (and where it came from), weights, probe set and normalisation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resstream_assert.pytest_plugin.run_state import _NOTES, _PIPELINE, _refs, _uses_models, run_config


def report_header(config: pytest.Config) -> list[str] | None:
    """The lines ``pytest_report_header`` prints; None in a run that tests no model (unrelated projects pay nothing).

    Example:
        >>> report_header(pytestconfig)  # doctest: +SKIP
        ['resstream_assert 0.1.0: torch 2.5.1, ...; models zoo:resnet18-synth96', ...]
    """
    if not _uses_models(config):
        return None  # unrelated projects: no header, no cost
    from importlib.metadata import PackageNotFoundError, version

    from resstream_assert.formatting import fnorm

    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"

    cfg, refs = run_config(config), _refs(config)
    lines = [f"resstream_assert {v('resstream_assert')}: torch {v('torch')}, torchvision {v('torchvision')}, "
             f"onnxruntime {v('onnxruntime')}, numpy {v('numpy')}, scipy {v('scipy')}; device {cfg.device}; "
             f"seed {cfg.seed}; images {cfg.images}; models {', '.join(str(r) for r in refs)}"]
    if cfg.stimuli != "exemplars":
        fv = {k: v for k, v in cfg.featviz.items() if v is not None}
        lines.append(f"stimuli {cfg.stimuli}: featviz channels per block {cfg.channels or 'all'}, "
                     + ", ".join(f"{k} {v}" for k, v in fv.items()))
    pipe = config.stash.get(_PIPELINE, None)
    for ref in refs:
        loaded = pipe.loaded(ref.spec, ref.backend) if pipe is not None else None
        if pipe is not None and loaded is not None:
            source = loaded.input_size_source
            weights = f"; weights {loaded.weights}" if loaded.weights else ""
            probe = pipe.probe_source(ref.spec) or "embedded"
            resize = "" if probe == "embedded" else f" (resize {cfg.resize}" + \
                (f", class index {Path(cfg.class_index).name})" if cfg.class_index else ")")
            norm = {"mean": loaded.mean, "std": loaded.std, "source": loaded.normalisation_source}
            lines.append(f"resstream model {ref}: input {loaded.input_size}px{f' ({source})' if source else ''}"
                         f"{weights}; probe {probe}{resize}; normalisation: {fnorm(norm)}")
    lines += [f"resstream WARNING: {note}" for note in config.stash.get(_NOTES, [])]
    if any(r.backend == "onnx" for r in refs):  # the providers a session really gets (pitfall 6)
        from resstream_assert.loading.ort_session import provider_report

        lines.append(provider_report(cfg.providers))
    return lines
