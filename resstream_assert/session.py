"""A run's configuration and the memoized objects built from it (models, maps, probes, responses).

The pytest plugin, the CLI and :func:`resstream_assert.analyze` all go through a
:class:`Workbench`, so each model is loaded, discovered and captured once per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MODEL = "zoo:resnet18-synth96"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Same config and seed -> same numbers.

    Example:
        >>> RunConfig(models=("torchvision:resnet18",)).images
        512
    """

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    probe: str | None = None
    images: int = 512
    batch_size: int = 64
    device: str = "cpu"
    seed: int = 0
    input_size: int | None = None
    cache_dir: str | None = None
    trust_pickle: bool = False
    backends: tuple[str, ...] = ("torch",)
    providers: tuple[str, ...] = ()
    progress: bool = True
    survey: bool = False  # report verdicts without failing tests (the suite xfails failing claims)
    claim_options: dict = field(default_factory=dict)

    def with_(self, **changes) -> "RunConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready form (stored in reports). The cache directory is left out: it is a local
        path, says nothing about the results, and would make committed baselines machine-specific."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k != "cache_dir"}


class Workbench:
    """Loads and memoizes what a run needs, keyed by (model spec, backend).

    Example:
        >>> wb = Workbench(RunConfig(models=("torchvision:resnet18",)))
        >>> wb.map("torchvision:resnet18").blocks[0].name  # doctest: +SKIP
        'layer1.0'
    """

    def __init__(self, config: RunConfig, log=None):
        self.config = config
        self.log = log  # optional callable(str) for progress lines
        self._models: dict = {}
        self._maps: dict = {}
        self._probes: dict = {}
        self._responses: dict = {}
        self._cache = None
        self._memo: dict = {}

    def model(self, spec: str, backend: str = "torch"):
        """The loaded model for ``spec`` on ``backend``."""
        key = (spec, backend)
        if key not in self._models:
            from resstream_assert.loading import load_model

            self._models[key] = load_model(spec, input_size=self.config.input_size, seed=self.config.seed,
                                           trust_pickle=self.config.trust_pickle, backend=backend,
                                           providers=self.config.providers)
        return self._models[key]

    def map(self, spec: str, backend: str = "torch"):
        """The model's :class:`ResidualMap`."""
        key = (spec, backend)
        if key not in self._maps:
            from resstream_assert.discovery import discover

            self._maps[key] = discover(self.model(spec, backend))
        return self._maps[key]

    def probe(self, size: int):
        """The probe set at ``size`` px (the embedded set unless ``--resstream-probe`` names a folder)."""
        if size not in self._probes:
            from resstream_assert.stimuli.probe import load_probe

            # The probe sample is fixed (seed 0) so that --resstream-seed changes only the resampling
            # (permutations, bootstraps, random sets): different seeds then differ by Monte-Carlo error alone.
            self._probes[size] = load_probe(self.config.probe, self.config.images, size, seed=0)
        return self._probes[size]

    @property
    def cache(self):
        """The on-disk response cache (``None`` directory disables it)."""
        if self._cache is None:
            from resstream_assert.capture.cache import ResponseCache

            self._cache = ResponseCache(self.config.cache_dir)
        return self._cache

    def memo(self, key, compute):
        """Compute ``compute()`` once per ``key`` for the life of this workbench."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def claim_results(self, spec: str, backend: str = "torch", claims=None) -> dict:
        """The claims (default: all registered) evaluated on ``spec``, once per workbench."""
        from resstream_assert.api import evaluate, resolve_claims

        ids = tuple(resolve_claims(claims))
        return self.memo(("claims", spec, backend, ids), lambda: evaluate(self, spec, backend, ids))

    def responses(self, spec: str, variants=("id",), backend: str = "torch") -> dict:
        """Captured responses of ``spec`` to each stimulus variant of the probe set."""
        from resstream_assert.capture import capture

        missing = [v for v in variants if (spec, backend, v) not in self._responses]
        if missing:
            loaded = self.model(spec, backend)
            got = capture(loaded, self.map(spec, backend), self.probe(loaded.input_size), variants=missing,
                          batch_size=self.config.batch_size, device=self.config.device, cache=self.cache,
                          progress=self.config.progress, log=self.log)
            for v, r in got.items():
                self._responses[(spec, backend, v)] = r
        return {v: self._responses[(spec, backend, v)] for v in variants}
