"""Capture: run stimuli through a model once and keep per-image, per-channel responses.

``torch_fx`` (taps in the traced graph) and ``onnx_runtime`` (reductions inside the ONNX
graph) return the same :class:`Responses`; ``cache`` stores them on disk by content hash;
``memory`` keeps a large capture's memory flat (spilled reductions, freed heap handed back).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import types
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from resstream_assert.capture.cache import ResponseCache, cache_key
from resstream_assert.capture.memory import SPILL_BYTES, Spill, release_when_grown
from resstream_assert.capture.responses import REDUCERS, Responses, site_key
from resstream_assert.discovery.residual_map import SITES, ResidualMap
from resstream_assert.errors import CaptureError

if TYPE_CHECKING:
    from resstream_assert.loading import LoadedModel
    from resstream_assert.stimuli.probe_set import ProbeSet

__all__ = ["capture", "CaptureSettings", "storage_groups", "check_finite", "Responses", "ResponseCache", "REDUCERS", "site_key", "COUNTERS"]

#: Running totals for benchmarks: forward passes (batches) and images sent through a model.
COUNTERS = {"batches": 0, "images": 0, "cache_hits": 0}


@dataclass(frozen=True)
class CaptureSettings:
    """How a capture runs and what it keeps: images per forward pass, device, a progress bar, the storage dtype
    of the reductions and the spatial reducers (``center`` always: the measures read it), and ``log`` for one
    line per variant actually run (the pytest plugin prints them, since pytest hides the progress bar).
    Reductions that would pass ``spill_over`` bytes go to disk batch by batch (``spill_dir``, else the
    system's temporary folder) and are read back one site at a time; ``spill_over=None`` keeps them in memory.

    Example:
        >>> CaptureSettings(storage="float16", reducers=("center",)).check().reducers
        ('center',)
    """

    batch_size: int = 64
    device: str = "cpu"
    progress: bool = True
    storage: str = "float32"
    reducers: tuple[str, ...] = REDUCERS
    log: Callable[[str], None] | None = None
    spill_over: int | None = SPILL_BYTES
    spill_dir: str | None = None

    def check(self) -> "CaptureSettings":
        """These settings with the reducers in canonical order; refuses a set without ``center``."""
        reducers = tuple(r for r in REDUCERS if r in tuple(self.reducers))
        if "center" not in reducers:
            raise ValueError(f"reducers must include 'center' (the measures read it), got {tuple(self.reducers)}")
        if self.spill_over is not None and (isinstance(self.spill_over, bool) or not isinstance(self.spill_over, int)
                                            or self.spill_over < 0):
            raise ValueError(f"spill_over must be a number of bytes >= 0 or None, got {self.spill_over!r}")
        return replace(self, reducers=reducers)


def capture(loaded: LoadedModel, rmap: ResidualMap, probe: ProbeSet, *, variants: Iterable[str] = ("id",),
            sites: Iterable[str] = SITES, keep_maps: Iterable[str] = (), cache: ResponseCache | None = None,
            settings: CaptureSettings | None = None, **fields: Any) -> dict[str, Responses]:
    """Capture every site of every block for each stimulus variant of ``probe``.

    One forward pass per variant covers all sites of all blocks. Results come from
    ``cache`` when an identical capture (same weights, images, variant, sites, versions)
    was stored before. How it runs is a :class:`CaptureSettings`, given whole (``settings=``) or by its
    fields (``batch_size=8, progress=False``). ``storage="float16"`` keeps the reductions in half precision
    (half the memory; :meth:`Responses.get` upcasts, and any value beyond float16's range keeps its
    site in float32). ``reducers=("center",)`` skips the spatial mean (half the memory again). Reductions
    that would pass ``spill_over`` bytes (256 MiB) are kept on disk and read one site at a time.

    Example:
        >>> out = capture(loaded, rmap, probe, variants=("id", "S"), progress=False)  # doctest: +SKIP
        >>> out["S"].get(3, "branch_out").shape  # doctest: +SKIP
        (512, 128)
    """
    from resstream_assert import __version__

    try:
        run = replace(settings or CaptureSettings(), **fields)
    except TypeError:  # replace() refuses a name that is not a field; check() below keeps its own errors
        known = ", ".join(f.name for f in dataclasses.fields(CaptureSettings))
        raise TypeError(f"capture() got an unknown setting among {sorted(fields)}; the settings: {known}") from None
    run = run.check()
    sites = tuple(sites)
    keep_maps = tuple(keep_maps)
    cache = cache or ResponseCache(None)
    out: dict[str, Responses] = {}
    for variant in variants:
        key = cache_key(model=loaded.digest, probe=probe.digest, variant=variant, sites=sites, keep=keep_maps,
                        size=rmap.input_size, backend=loaded.backend, version=__version__,
                        framework=_framework_version(loaded.backend), provider=loaded.onnx.providers if loaded.onnx else None,
                        storage=run.storage, reducers=run.reducers,
                        normalisation=[list(map(float, loaded.mean)), list(map(float, loaded.std))])

        def compute(v: str = variant) -> Responses:  # the default binds this iteration's variant
            return check_finite(_run(loaded, rmap, probe, v, sites, keep_maps, run), rmap, loaded.name)

        before = cache.hits
        start = time.perf_counter()
        # Checked after the cache too: a non-finite entry read back is the same error as one just computed.
        out[variant] = check_finite(cache.get_or_compute(key, compute), rmap, loaded.name)
        COUNTERS["cache_hits"] += cache.hits - before
        if run.log is not None:
            how = "from cache" if cache.hits > before else f"{len(probe)} images in {time.perf_counter() - start:.1f} s"
            run.log(f"[resstream] captured {loaded.name} [{variant}]: {how}")
    return out


def storage_groups(variants: list[str], storage: str) -> list[tuple[str, list[str]]]:
    """``(storage, variants)`` groups to capture: ``auto`` keeps the untransformed ``id`` responses in float32 (their
    near-ties decide the exemplars, hence M) and the transformed variants in float16.

    Example:
        >>> storage_groups(["id", "S", "flip"], "auto")
        [('float32', ['id']), ('float16', ['S', 'flip'])]
    """
    if storage != "auto":
        return [(storage, list(variants))] if variants else []
    from resstream_assert.stimuli.variants import canonical_variant

    plain = [v for v in variants if canonical_variant(v)[0] == "id"]
    rest = [v for v in variants if v not in plain]
    return [(st, g) for st, g in (("float32", plain), ("float16", rest)) if g]


def check_finite(responses: Responses, rmap: ResidualMap, name: str = "the model") -> Responses:
    """``responses`` unchanged, or :class:`CaptureError` naming every site (and the logits) with NaN or inf.

    Example:
        >>> check_finite(resp, rmap)  # doctest: +SKIP
    """
    import numpy as np

    bad = []
    for kind, table in (("center", responses.center), ("mean", responses.mean)):
        for key, arr in table.items():
            n = int(arr.size - np.isfinite(arr).sum())
            if n:
                block, _, site = key.partition("/")
                b = rmap[int(block)]
                bad.append(f"{b.name} {site} ({b.sites.get(site, site)}, {kind}: {n} of {arr.size} values)")
    if responses.logits is not None and not np.isfinite(responses.logits).all():
        bad.append(f"the logits ({int(responses.logits.size - np.isfinite(responses.logits).sum())} values)")
    if bad:
        shown = "; ".join(dict.fromkeys(bad[:6])) + (f"; and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise CaptureError(f"{name} produced non-finite responses (NaN or inf) to the probe images "
                           f"[{responses.variant}] at {shown}. Statistics on them would be meaningless: check the "
                           "weights (a diverged run?), the input normalization and the input size.")
    return responses


def _run(loaded: LoadedModel, rmap: ResidualMap, probe: ProbeSet, variant: str, sites: tuple[str, ...],
         keep_maps: tuple[str, ...], run: CaptureSettings) -> Responses:
    """One variant's capture on the model's backend, with a progress bar when asked and on a terminal."""
    from tqdm.auto import tqdm

    from resstream_assert.stimuli.variants import apply_variant, parse_variant

    parse_variant(variant)  # fail early, with the list of valid names
    bar = tqdm(total=len(probe), desc=f"capture {loaded.name} [{variant}]", unit="img", leave=False,
               disable=not run.progress or not sys.stderr.isatty())

    def tick(n: int) -> None:
        COUNTERS["batches"] += 1
        COUNTERS["images"] += n
        bar.update(n)
        release_when_grown()  # the forward pass's freed intermediates, once they add up (memory.py says why)

    transform = None if variant == "id" else (lambda x: apply_variant(x, variant))
    spill = Spill(len(probe), run.spill_over, run.spill_dir)
    try:
        if loaded.backend == "onnx":
            from resstream_assert.capture.onnx_runtime import capture_onnx

            return capture_onnx(loaded, rmap, probe.batches(run.batch_size), variant=variant, sites=sites,
                                transform=transform, progress=tick, storage=run.storage, reducers=run.reducers,
                                spill=spill)
        from resstream_assert.capture.torch_fx import capture_torch

        return capture_torch(loaded, rmap, probe.batches(run.batch_size), variant=variant, sites=sites,
                             keep_maps=keep_maps, device=run.device, transform=transform, progress=tick,
                             storage=run.storage, reducers=run.reducers, spill=spill)
    finally:
        bar.close()


def _framework_version(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime" if backend == "onnx" else "torch")
    except PackageNotFoundError:
        return "unknown"


class _CallablePackage(types.ModuleType):
    """Importing this package binds ``resstream_assert.capture`` to it, hiding the public function
    ``resstream_assert.capture(...)`` of the lazy facade; calling the package calls :func:`capture`."""

    def __call__(self, *args, **kwargs) -> dict[str, Responses]:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
