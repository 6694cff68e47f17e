"""The pipeline: load -> discover -> stimuli -> capture -> measures -> (interventions) -> claims, memoized.

The pytest plugin, the CLI and :func:`resstream_assert.analyze` all go through a
:class:`Pipeline`, so each model is loaded, discovered and captured once per process, and
each claim's intervention (C10's lesions, ...) runs once per model and request.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from resstream_assert.config import RunConfig
from resstream_assert.errors import FeatvizUnavailable, ResstreamWarning
from resstream_assert.kinds import Backend, StimulusSource
# A run's models and their loading live in run_models; imported from here too, where callers have always found them.
from resstream_assert.run_models import ModelRef, load_model, model_refs

if TYPE_CHECKING:
    from resstream_assert.capture import CaptureSettings
    from resstream_assert.capture.cache import ResponseCache
    from resstream_assert.claims import ClaimOptions
    from resstream_assert.discovery import ResidualMap
    from resstream_assert.loading import LoadedModel
    from resstream_assert.results import ClaimResult

__all__ = ["Pipeline", "ModelRef", "model_refs", "load_model", "enter_run", "leave_run", "current_run"]


_RUNS: list[Callable[[], "Pipeline"]] = []  # the pytest runs in this process, innermost last (set by the plugin)


def enter_run(provider: Callable[[], "Pipeline"]) -> Callable[[], "Pipeline"]:
    """Make ``provider()`` (the pytest run's pipeline, built on first use) the current run until
    :func:`leave_run`; returns ``provider``.

    The assertion helpers evaluate a spec in the current run, so they use its options (images, input size,
    probe, seed, thresholds) and its captures: the same numbers as the run's own claim tests.

    Example:
        >>> run = enter_run(lambda: Pipeline(RunConfig(images=64)))
        >>> current_run().config.images
        64
        >>> leave_run(run); run in _RUNS  # an enclosing pytest run, if any, is current again
        False
    """
    _RUNS.append(provider)
    return provider


def leave_run(provider: Callable[[], "Pipeline"] | None) -> None:
    """End the run :func:`enter_run` started with ``provider`` (nothing when it is not current)."""
    if provider in _RUNS:
        _RUNS.remove(provider)


def current_run() -> "Pipeline | None":
    """The pipeline of the pytest run this code runs in, or None outside pytest (see :func:`enter_run`)."""
    return _RUNS[-1]() if _RUNS else None


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
        self._cache: ResponseCache | None = None

    def memo(self, key, compute: Callable[[], Any]) -> Any:
        """Compute ``compute()`` once per ``key`` for the life of this pipeline."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def loaded(self, spec: str, backend: Backend = "torch") -> LoadedModel | None:
        """The model if it was loaded already, else None (loads nothing)."""
        return self._memo.get(("model", spec, backend))

    def model(self, spec: str, backend: Backend = "torch") -> LoadedModel:
        """The loaded model for ``spec`` on ``backend`` (:func:`load_model`). A warning of the loader (a guessed
        input size) is given once per model and pipeline, not once per backend or engine that loads it."""
        cfg = self.config
        adopted = self._memo.get(("model", spec, "torch"))
        if backend == "onnx" and adopted is not None and ("model", spec, "onnx") not in self._memo \
                and ("adopted", spec) in self._memo:
            from resstream_assert.loading.onnx_export import to_onnx_backend

            return self.memo(("model", spec, backend), lambda: to_onnx_backend(adopted, cfg.providers))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResstreamWarning)
            loaded = self.memo(("model", spec, backend), lambda: load_model(
                cfg.spec_of(spec), input_size=cfg.input_size, seed=cfg.seed, trust_pickle=cfg.trust_pickle, backend=backend,
                providers=cfg.providers, safe_globals=cfg.safe_globals, mean=cfg.mean, std=cfg.std))
        for w in caught:
            if not issubclass(w.category, ResstreamWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            elif ("warned", str(w.message)) not in self._memo:
                self._memo[("warned", str(w.message))] = True
                warnings.warn(w.message, stacklevel=2)
        return loaded

    def adopt(self, loaded: LoadedModel) -> str:
        """Use a model loaded already (:func:`load_model`) as its spec's model; returns the spec.

        Example:
            >>> pipe = Pipeline(RunConfig())
            >>> pipe.adopt(load_model("zoo:cifar-resnet20-synth32"))  # doctest: +SKIP
            'zoo:cifar-resnet20-synth32'
        """
        if self.config.input_size is not None and self.config.input_size != loaded.input_size:
            from resstream_assert.errors import ConfigError

            raise ConfigError(f"input_size={self.config.input_size}: the model {loaded.spec} was loaded at "
                              f"{loaded.input_size} px; load it with input_size={self.config.input_size}, or drop "
                              "the option")
        self._memo[("model", loaded.spec, loaded.backend)] = loaded
        self._memo[("adopted", loaded.spec)] = True
        return loaded.spec

    def map(self, spec: str, backend: Backend = "torch") -> ResidualMap:
        """The model's :class:`~resstream_assert.discovery.ResidualMap`."""
        from resstream_assert.discovery import discover

        return self.memo(("map", spec, backend), lambda: discover(self.model(spec, backend)))

    def probe(self, size: int, source: str | None = None):
        """The probe set at ``size`` px from ``source`` (``None``: ``--resstream-probe``, else the embedded set)."""
        from resstream_assert.stimuli.probe import load_probe

        source = source or self.config.probe
        # The probe sample is fixed (seed 0) so that --resstream-seed changes only the resampling
        # (permutations, bootstraps, random sets): different seeds then differ by Monte-Carlo error alone.
        cfg = self.config
        return self.memo(("probe", size, source), lambda: load_probe(
            source, cfg.images, size, seed=0, resize=cfg.resize, class_index=cfg.class_index))

    def probe_source(self, spec: str) -> str | None:
        """Where a model's probe images come from: ``--resstream-probe`` when given, else the probe set
        its zoo entry names (``cifar10`` for the models trained on photographs), else the embedded set (None)."""
        if self.config.probe:
            return self.config.probe
        parsed = self.config.spec_of(spec)
        if parsed.kind != "zoo":
            return None
        from resstream_assert import zoo

        return zoo.get(parsed.target).probe

    def model_probe(self, spec: str, backend: Backend = "torch"):
        """The probe set a model is measured on: from :meth:`probe_source`, at the model's input size."""
        return self.probe(self.model(spec, backend).input_size, self.probe_source(spec))

    @property
    def cache(self) -> ResponseCache:
        """The on-disk response cache (``None`` directory disables it)."""
        if self._cache is None:
            from resstream_assert.capture.cache import ResponseCache

            self._cache = ResponseCache(self.config.cache_dir)
        return self._cache

    def engine(self, spec: str, backend: Backend = "torch") -> str:
        """What runs ``spec``'s forward passes on ``backend``: ``"onnxruntime"`` or ``"torch"``.

        A torch model runs through its own ONNX export (same weights, BN kept; parity with torch is
        tested to ~1e-6) when the engine is ``onnxruntime``, or ``auto`` on a CPU and the export's
        residual blocks match the torch graph's; otherwise through torch.
        """
        cfg = self.config
        if backend != "torch":
            return "onnxruntime"
        if cfg.engine == "torch" or (cfg.engine == "auto" and cfg.device != "cpu"):
            return "torch"
        return self.memo(("engine", spec), lambda: self._onnx_engine(spec, required=cfg.engine == "onnxruntime"))

    def _onnx_engine(self, spec: str, required: bool) -> str:
        from resstream_assert.errors import BackendUnavailable, ResstreamError

        try:
            shape = lambda rmap: [(b.name, b.channels, b.spatial) for b in rmap]  # noqa: E731
            same = shape(self.map(spec, "onnx")) == shape(self.map(spec, "torch"))
            why = "" if same else "the ONNX export's residual blocks differ from the torch graph's"
        except ResstreamError as exc:
            why = f"the ONNX export failed ({str(exc)[:200]})"
        if not why:
            return "onnxruntime"
        if required:
            raise BackendUnavailable(f"--resstream-engine onnxruntime cannot run {spec}: {why}. Use --resstream-engine "
                                     "torch (or auto).")
        if self.log is not None:
            self.log(f"[resstream] {spec}: running on torch ({why})")
        return "torch"

    def responses(self, spec: str, variants: Iterable[str] = ("id",), backend: Backend = "torch") -> dict:
        """Captured responses of ``spec`` to each stimulus variant of the probe set.

        Each transform is captured once: names for the same transform (``S`` and ``zoom2.0``)
        share one capture (:func:`~resstream_assert.stimuli.variants.canonical_variant`).
        """
        from resstream_assert.capture import capture, storage_groups
        from resstream_assert.stimuli.variants import canonical_variant

        variants = tuple(variants)
        key = lambda v: ("responses", spec, backend, canonical_variant(v))  # noqa: E731
        missing: list[str] = []
        for v in variants:
            if key(v) not in self._memo and all(key(m) != key(v) for m in missing):
                missing.append(v)
        run_on: Backend = "onnx" if missing and self.engine(spec, backend) == "onnxruntime" else "torch"
        for storage, group in storage_groups(missing, self.config.storage):
            loaded = self.model(spec, run_on)
            got = capture(loaded, self.map(spec, run_on), self.model_probe(spec, backend), variants=group,
                          cache=self.cache, settings=self.capture_settings(storage))
            for v, r in got.items():
                self._memo[key(v)] = r
        return {v: replace(self._memo[key(v)], variant=v) for v in variants}

    def capture_settings(self, storage: str = "float32") -> CaptureSettings:
        """How this run captures: its batch size, device, progress and log; the center unit only (the measures
        read nothing else); a large capture spills into the cache folder when there is one.

        Example:
            >>> Pipeline(RunConfig(batch_size=16)).capture_settings().batch_size
            16
        """
        from resstream_assert.capture import CaptureSettings

        cfg = self.config
        return CaptureSettings(batch_size=cfg.batch_size, device=cfg.device, progress=cfg.progress, log=self.log,
                               storage=storage, reducers=("center",),
                               spill_dir=str(cfg.cache_dir) if cfg.cache_dir else None)

    def measures(self, spec: str, backend: Backend, variants: tuple[str, ...], stimuli: str = "exemplars") -> tuple:
        """Per-block measures from the responses to ``variants`` (scale and zoom quantities need theirs),
        on the probe set's top-k exemplars or (``stimuli="featviz"``) on feature visualizations."""
        from resstream_assert.measures import MeasureOptions, measure_all

        _check_source(stimuli)
        seed = self.config.seed
        return self.memo(("measures", spec, backend, seed, variants, stimuli), lambda: tuple(measure_all(
            self.map(spec, backend), self.responses(spec, variants, backend), MeasureOptions(seed=seed),
            stimuli=self.block_stimuli(spec, backend, variants) if stimuli == "featviz" else None)))

    def featviz(self, spec: str, backend: Backend = "torch", variants: tuple[str, ...] = ("id",)):
        """The model's feature visualizations with their responses to ``variants`` and their success check
        (:class:`~resstream_assert.capture.featviz_responses.FeatvizStimuli`); optimised on the torch
        model, captured on ``backend``, cached on disk."""
        from resstream_assert.capture.featviz_responses import featviz_stimuli, sample_channels

        def run():
            cfg = self.config
            loaded, rmap = self.model(spec, backend), self.map(spec, backend)
            torch_loaded = self.model(spec, "torch")
            if torch_loaded.module is None:
                raise FeatvizUnavailable(f"feature visualization optimises an image through the model, which needs "
                                         f"a torch model; {spec!r} is an ONNX file (use --resstream-stimuli exemplars)")
            return featviz_stimuli(
                torch_loaded, self.map(spec, "torch"), loaded, rmap, self.responses(spec, ("id",), backend)["id"],
                channels=sample_channels(rmap, cfg.channels, cfg.seed), seeds=int(cfg.featviz.get("seeds") or 1),
                settings=self.featviz_settings(), variants=variants,
                run=self.capture_settings(), cache_dir=cfg.cache_dir)

        return self.memo(("featviz", spec, backend, tuple(variants)), run)

    def featviz_settings(self):
        """The run's :class:`~resstream_assert.stimuli.featviz.FeatvizSettings` (``--resstream-featviz-*``)."""
        from resstream_assert.stimuli.featviz import FeatvizSettings

        fv, cfg = self.config.featviz, self.config
        device = fv.get("device") or cfg.device
        given = {k: v for k, v in fv.items() if v is not None and k not in ("seeds", "device")}
        # channels_last paid 1.2-1.3x on CPU in benchmarks/bench_featviz.py, and is the fast layout on CUDA too.
        return FeatvizSettings(**{"device": device, "channels_last": True, "seed": cfg.seed, **given}).check()

    def block_stimuli(self, spec: str, backend: Backend, variants: tuple[str, ...]) -> dict:
        """Block index -> :class:`~resstream_assert.measures.BlockStimuli` of the featviz source."""
        from resstream_assert.measures import BlockStimuli

        fz = self.featviz(spec, backend, variants)
        return {b: BlockStimuli(fz.responses, idx["skip_out"], idx["branch_out"], idx["resid_sum"], idx["resid_sum"])
                for b, idx in fz.indices.items()}

    def context(self, spec: str, backend: Backend = "torch", claims: Iterable[str] | None = None, options=None,
                stimuli: str = "exemplars"):
        """The :class:`~resstream_assert.claims.ClaimContext` the claims of ``spec`` are evaluated in.

        Example:
            >>> pipe = Pipeline(RunConfig())
            >>> ctx = pipe.context("zoo:resnet18-synth96", claims=["X1"])  # doctest: +SKIP
            >>> data = pipe.intervention("zoo:resnet18-synth96", "torch", REGISTRY["X1"].prepare(ctx))  # doctest: +SKIP
        """
        from resstream_assert.claims import ClaimContext, ClaimOptions, needed_variants, resolve_claims

        cfg = self.config
        variants = needed_variants(resolve_claims(claims if claims is not None else cfg.claims))
        return ClaimContext(model=cfg.label_of(str(spec)), model_spec=cfg.spec_of(str(spec)), backend=backend, rmap=self.map(spec, backend),
                            measures=self.measures(spec, backend, variants, stimuli),
                            responses=self.responses(spec, variants, backend),
                            options=options or ClaimOptions.from_run(cfg.claim_options), seed=cfg.seed)

    def evaluate(self, spec: str, backend: Backend = "torch", claims: Iterable[str] | None = None,
                 options: ClaimOptions | None = None, stimuli: StimulusSource = "exemplars") -> dict[str, ClaimResult]:
        """Claim id -> :class:`~resstream_assert.results.ClaimResult` on one model (``claims`` default: the run's),
        on the given stimulus source (``exemplars`` or ``featviz``).

        A claim whose spec has ``prepare`` gets its intervention run first (once per request).

        Example:
            >>> Pipeline(RunConfig()).evaluate("zoo:resnet18-synth96", claims=["C1"])["C1"].verdict  # doctest: +SKIP
        """
        from resstream_assert.claims import REGISTRY, ClaimContext, ClaimOptions, needed_variants, resolve_claims
        from resstream_assert.claims.base import inconclusive, not_run
        from resstream_assert.results import Verdict

        cfg = self.config
        _check_source(stimuli)
        ids = resolve_claims(claims if claims is not None else cfg.claims)
        options = options or ClaimOptions.from_run(cfg.claim_options)
        variants = needed_variants(ids)
        probe = self.model_probe(spec, backend)
        ctx = ClaimContext(model=cfg.label_of(str(spec)), model_spec=cfg.spec_of(str(spec)), backend=backend, rmap=self.map(spec, backend), measures=(),
                           responses={}, options=options, seed=cfg.seed)
        if len(probe) < options.min_images:
            why = (f"{len(probe)} probe images < {options.min_images} (min_images): top-k exemplars would not be "
                   "channel-specific, nor the featviz success thresholds stable; use more images (--resstream-images)")
            return self._label({cid: inconclusive(ctx.for_claim(REGISTRY[cid]), why) for cid in ids}, stimuli)
        try:
            ctx = self.context(spec, backend, ids, options, stimuli)
        except FeatvizUnavailable as exc:
            return self._label({cid: not_run(ctx.for_claim(REGISTRY[cid]), Verdict.NOT_APPLICABLE, str(exc))
                                for cid in ids}, stimuli)
        results = {}
        for cid in ids:
            claim = REGISTRY[cid]
            data = self.intervention(spec, backend, claim.prepare(ctx.for_claim(claim))) \
                if claim.prepare is not None else None
            results[cid] = claim.evaluate(ctx.for_claim(claim, data))
        if stimuli == "featviz":
            from resstream_assert.report.featviz_grid import label_featviz_results

            return label_featviz_results(results, self.featviz(spec, backend, variants), self.map(spec, backend))
        if cfg.stability:  # the exemplar source: re-evaluated on probe half-samples (featviz would re-optimise)
            results = self._with_stability(ctx, results, options, len(probe))
        return results

    def _with_stability(self, ctx, results: dict, options, n_images: int) -> dict:
        """``results`` with each response-only claim's verdict stability (``--resstream-stability N``)."""
        from resstream_assert.claims.verdict_stability import SUBSAMPLE_FRACTION, response_claims, verdict_stability

        runs = self.config.stability
        ids = response_claims(results)
        if not ids:
            return results
        if self.log is not None:
            self.log(f"resstream: verdict stability of {', '.join(ids)} on {ctx.model}: {runs} re-evaluations on "
                     f"{round(SUBSAMPLE_FRACTION * n_images)} of {n_images} probe images, other seeds")
        table = verdict_stability(ctx.rmap, ctx.responses, {cid: results[cid] for cid in ids}, runs=runs,
                                  options=options, seed=self.config.seed)
        not_covered = {"runs": 0.0, "reruns_model": 1.0}  # C10, C11: lesions cannot be re-run on responses
        return {cid: r.with_(stability=table.get(cid, not_covered)) for cid, r in results.items()}

    @staticmethod
    def _label(results: dict, stimuli: str) -> dict:
        return results if stimuli == "exemplars" else {k: r.with_(stimuli=stimuli) for k, r in results.items()}

    def agreement(self, spec: str, backend: Backend = "torch"):
        """The exemplar vs featviz agreement of one model: per block, Cohen's kappa of the skip / mix /
        overwrite categories (a report-only :class:`~resstream_assert.results.ClaimResult`, id ``C1-agree``)."""
        from resstream_assert.claims import ClaimOptions, needed_variants, resolve_claims
        from resstream_assert.claims.agreement import category_agreement

        cfg = self.config
        variants = needed_variants(resolve_claims(cfg.claims))

        def run():
            options = ClaimOptions.from_run(cfg.claim_options)
            try:
                featviz = self.measures(spec, backend, variants, "featviz")
            except FeatvizUnavailable as exc:
                featviz, why = None, str(exc)
            else:
                why = ""
            return category_agreement(str(spec), backend, self.measures(spec, backend, variants), featviz,
                                      options=options, seed=cfg.seed, reason=why)

        return self.memo(("agreement", spec, backend, variants), run)

    def intervention(self, spec: str, backend: Backend, request) -> Any:
        """Run an intervention request (see :mod:`resstream_assert.interventions`) on ``spec``, once per key.

        Example:
            >>> data = pipe.intervention("zoo:resnet18-synth96", "torch", request)  # doctest: +SKIP
        """
        from resstream_assert.interventions import InterventionEnv

        def run():
            loaded = self.model(spec, backend)
            env = InterventionEnv(loaded, self.map(spec, backend), self.model_probe(spec, backend),
                                  probe_source=self.probe_source(spec), device=self.config.device, log=self.log)
            return request.run(env)

        return self.memo(("intervention", spec, backend, request.key), run)

    def claim_results(self, spec: str, backend: Backend = "torch", claims: Iterable[str] | None = None,
                      stimuli: StimulusSource = "exemplars") -> dict[str, ClaimResult]:
        """The claims (default: the run's selection, else all) evaluated on ``spec`` with the run's options, once."""
        from resstream_assert.claims import resolve_claims

        ids = tuple(resolve_claims(claims if claims is not None else self.config.claims))
        return self.memo(("claims", spec, backend, ids, stimuli), lambda: self.evaluate(spec, backend, ids,
                                                                                       stimuli=stimuli))


def _check_source(stimuli: str) -> None:
    if stimuli not in ("exemplars", "featviz"):
        raise ValueError(f"stimuli must be 'exemplars' or 'featviz' (a run's 'both' means one of each), "
                         f"not {stimuli!r}")
