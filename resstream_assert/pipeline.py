"""The pipeline: load -> discover -> stimuli -> capture -> measures -> (interventions) -> claims, memoized.

The pytest plugin, the CLI and :func:`resstream_assert.analyze` all go through a
:class:`Pipeline`, so each model is loaded, discovered and captured once per process, and
each claim's intervention (C10's lesions, ...) runs once per model and request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, NamedTuple

from resstream_assert.config import RunConfig

__all__ = ["Pipeline", "ModelRef", "model_refs", "load_model"]


class ModelRef(NamedTuple):
    """One model of a run on one backend (one parametrization of the plugin's model fixtures)."""

    spec: str
    backend: str

    def __str__(self) -> str:
        return self.spec if self.backend == "torch" else f"{self.spec}[{self.backend}]"


def model_refs(config: RunConfig) -> list[ModelRef]:
    """Every (model, backend) pair of a run: the chosen backends, else each spec's own (onnx for .onnx files).

    Example:
        >>> model_refs(RunConfig(models=("zoo:resnet18-synth96", "r18.onnx")))
        [ModelRef(spec='zoo:resnet18-synth96', backend='torch'), ModelRef(spec='r18.onnx', backend='onnx')]
    """
    from resstream_assert.loading import ModelSpec

    refs = []
    for spec in config.models:
        backends = config.backends or (ModelSpec.parse(spec).default_backend,)
        refs += [ModelRef(spec, b) for b in backends]
    return refs


def load_model(spec: str, *, input_size: int | None = None, trust_pickle: bool = False, seed: int = 0,
               backend: str = "torch", providers: tuple[str, ...] = ()):
    """Load a model spec the way a run sees it: stored model, then its negative control, then its backend.

    ``backend="onnx"`` runs a torch model through its own ONNX export (cached on disk).

    Example:
        >>> m = load_model("torchvision:resnet18+nc-id")  # doctest: +SKIP
        >>> m.control, m.backend  # doctest: +SKIP
        ('nc-id', 'torch')
    """
    from resstream_assert.loading import ModelSpec, weights_digest
    from resstream_assert.loading import load_model as load_stored

    parsed = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    if parsed.kind == "onnx":
        from resstream_assert.loading.onnx_file import load_onnx

        return load_onnx(parsed, input_size, providers)  # refuses a control: it would need the torch model
    loaded = load_stored(replace(parsed, control=None), input_size=input_size, trust_pickle=trust_pickle)
    if parsed.control:
        from resstream_assert.interventions.controls import apply_control

        loaded.module = apply_control(loaded.module, parsed.control, seed=seed, input_size=loaded.input_size)
        loaded.module.eval()
        loaded.control = parsed.control
        loaded.digest = weights_digest(loaded.module, parsed.text)
    if backend == "onnx":
        from resstream_assert.loading.onnx_export import to_onnx_backend

        return to_onnx_backend(loaded, providers)
    return loaded


class Pipeline:
    """One run's memo of loaded models, residual maps, probe sets, responses, measures, interventions
    and claim results, keyed by (model spec, backend).

    Example:
        >>> pipe = Pipeline(RunConfig(models=("torchvision:resnet18",)))
        >>> pipe.map("torchvision:resnet18").blocks[0].name  # doctest: +SKIP
        'layer1.0'
    """

    def __init__(self, config: RunConfig, log: Callable[[str], None] | None = None):
        self.config = config
        self.log = log  # optional callable(str) for progress lines
        self._memo: dict = {}
        self._cache = None

    def memo(self, key, compute: Callable[[], Any]) -> Any:
        """Compute ``compute()`` once per ``key`` for the life of this pipeline."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def model(self, spec: str, backend: str = "torch"):
        """The loaded model for ``spec`` on ``backend`` (:func:`load_model`)."""
        cfg = self.config
        return self.memo(("model", spec, backend), lambda: load_model(
            spec, input_size=cfg.input_size, seed=cfg.seed, trust_pickle=cfg.trust_pickle, backend=backend,
            providers=cfg.providers))

    def map(self, spec: str, backend: str = "torch"):
        """The model's :class:`~resstream_assert.discovery.ResidualMap`."""
        from resstream_assert.discovery import discover

        return self.memo(("map", spec, backend), lambda: discover(self.model(spec, backend)))

    def probe(self, size: int):
        """The probe set at ``size`` px (the embedded set unless ``--resstream-probe`` names a folder)."""
        from resstream_assert.stimuli.probe import load_probe

        # The probe sample is fixed (seed 0) so that --resstream-seed changes only the resampling
        # (permutations, bootstraps, random sets): different seeds then differ by Monte-Carlo error alone.
        return self.memo(("probe", size), lambda: load_probe(self.config.probe, self.config.images, size, seed=0))

    @property
    def cache(self):
        """The on-disk response cache (``None`` directory disables it)."""
        if self._cache is None:
            from resstream_assert.capture.cache import ResponseCache

            self._cache = ResponseCache(self.config.cache_dir)
        return self._cache

    def responses(self, spec: str, variants: Iterable[str] = ("id",), backend: str = "torch") -> dict:
        """Captured responses of ``spec`` to each stimulus variant of the probe set (each variant once)."""
        from resstream_assert.capture import capture

        variants = tuple(variants)
        missing = [v for v in variants if ("responses", spec, backend, v) not in self._memo]
        if missing:
            loaded = self.model(spec, backend)
            got = capture(loaded, self.map(spec, backend), self.probe(loaded.input_size), variants=missing,
                          batch_size=self.config.batch_size, device=self.config.device, cache=self.cache,
                          progress=self.config.progress, log=self.log)
            for v, r in got.items():
                self._memo[("responses", spec, backend, v)] = r
        return {v: self._memo[("responses", spec, backend, v)] for v in variants}

    def measures(self, spec: str, backend: str, variants: tuple[str, ...]) -> tuple:
        """Per-block measures from the responses to ``variants`` (scale and zoom quantities need theirs)."""
        from resstream_assert.measures import MeasureOptions, measure_all

        seed = self.config.seed
        return self.memo(("measures", spec, backend, seed, variants), lambda: tuple(measure_all(
            self.map(spec, backend), self.responses(spec, variants, backend), MeasureOptions(seed=seed))))

    def context(self, spec: str, backend: str = "torch", claims: Iterable[str] | None = None, options=None):
        """The :class:`~resstream_assert.claims.ClaimContext` the claims of ``spec`` are evaluated in.

        Example:
            >>> pipe = Pipeline(RunConfig())
            >>> ctx = pipe.context("zoo:resnet18-synth96", claims=["X1"])  # doctest: +SKIP
            >>> data = pipe.intervention("zoo:resnet18-synth96", "torch", REGISTRY["X1"].prepare(ctx))  # doctest: +SKIP
        """
        from resstream_assert.claims import ClaimContext, ClaimOptions, needed_variants, resolve_claims

        cfg = self.config
        ids = resolve_claims(claims if claims is not None else cfg.claims)
        options = options or ClaimOptions.from_run(cfg.claim_options)
        variants = needed_variants(ids)
        return ClaimContext(model=str(spec), backend=backend, rmap=self.map(spec, backend),
                            measures=self.measures(spec, backend, variants),
                            responses=self.responses(spec, variants, backend), options=options, seed=cfg.seed)

    def evaluate(self, spec: str, backend: str = "torch", claims: Iterable[str] | None = None,
                 options=None) -> dict:
        """Claim id -> :class:`~resstream_assert.results.ClaimResult` on one model (``claims`` default: the run's).

        A claim whose spec has ``prepare`` gets its intervention run first (once per request).

        Example:
            >>> Pipeline(RunConfig()).evaluate("zoo:resnet18-synth96", claims=["C1"])["C1"].verdict  # doctest: +SKIP
        """
        from resstream_assert.claims import REGISTRY, resolve_claims
        from resstream_assert.claims.base import inconclusive

        ids = resolve_claims(claims if claims is not None else self.config.claims)
        ctx = self.context(spec, backend, ids, options)
        options = ctx.options
        loaded = self.model(spec, backend)
        probe = self.probe(loaded.input_size)
        if len(probe) < options.min_images:
            why = (f"{len(probe)} probe images < {options.min_images} (min_images): top-k exemplars would not be "
                   "channel-specific; use more images (--resstream-images)")
            return {cid: inconclusive(ctx.for_claim(REGISTRY[cid]), why) for cid in ids}
        results = {}
        for cid in ids:
            claim = REGISTRY[cid]
            data = self.intervention(spec, backend, claim.prepare(ctx.for_claim(claim))) \
                if claim.prepare is not None else None
            results[cid] = claim.evaluate(ctx.for_claim(claim, data))
        return results

    def intervention(self, spec: str, backend: str, request) -> Any:
        """Run an intervention request (see :mod:`resstream_assert.interventions`) on ``spec``, once per key.

        Example:
            >>> data = pipe.intervention("zoo:resnet18-synth96", "torch", request)  # doctest: +SKIP
        """
        from resstream_assert.interventions import InterventionEnv

        def run():
            loaded = self.model(spec, backend)
            env = InterventionEnv(loaded, self.map(spec, backend), self.probe(loaded.input_size),
                                  probe_source=self.config.probe, device=self.config.device, log=self.log)
            return request.run(env)

        return self.memo(("intervention", spec, backend, request.key), run)

    def claim_results(self, spec: str, backend: str = "torch", claims: Iterable[str] | None = None) -> dict:
        """The claims (default: the run's selection, else all) evaluated on ``spec`` with the run's options, once."""
        from resstream_assert.claims import resolve_claims

        ids = tuple(resolve_claims(claims if claims is not None else self.config.claims))
        return self.memo(("claims", spec, backend, ids), lambda: self.evaluate(spec, backend, ids))
