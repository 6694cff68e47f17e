"""The models of a run: which ones (:class:`ModelRef`, :func:`model_refs`) and how each is loaded
(:func:`load_model`: the stored model, then its normalisation, input size, negative control and backend, one
loading step after another, each returning a new frozen :class:`~resstream_assert.loading.LoadedModel`).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple, Sequence

from resstream_assert.config import RunConfig
from resstream_assert.errors import ResstreamWarning
from resstream_assert.kinds import Backend, StimulusSource

if TYPE_CHECKING:
    from resstream_assert.loading import LoadedModel, ModelSpec

__all__ = ["ModelRef", "load_model", "model_refs"]


class ModelRef(NamedTuple):
    """One model of a run on one backend with one stimulus source (one parametrization of the model fixtures).

    ``label`` is the model's short name in reports and test ids (``RunConfig.model_labels``).
    """

    spec: str
    backend: Backend
    stimuli: StimulusSource = "exemplars"
    label: str = ""

    def __str__(self) -> str:
        name = self.label or self.spec
        tag = self.backend if self.stimuli == "exemplars" else \
            (self.stimuli if self.backend == "torch" else f"{self.backend}+{self.stimuli}")
        return name if tag == "torch" else f"{name}[{tag}]"


def model_refs(config: RunConfig) -> list[ModelRef]:
    """Every (model, backend, stimulus source) of a run: the chosen backends, else each spec's own (onnx for
    .onnx files), times the stimulus sources (``--resstream-stimuli both``: exemplars and featviz).

    With ``config.shard = (i, n)`` only models ``i, i + n, ...`` (1-based) of the list are kept.

    Example:
        >>> model_refs(RunConfig(models=("zoo:resnet18-synth96", "r18.onnx")))  # doctest: +NORMALIZE_WHITESPACE
        [ModelRef(spec='zoo:resnet18-synth96', backend='torch', stimuli='exemplars', label='zoo:resnet18-synth96'),
         ModelRef(spec='r18.onnx', backend='onnx', stimuli='exemplars', label='r18.onnx')]
    """
    refs = []
    rows = list(zip(config.models, config.specs, config.model_labels()))
    if config.shard is not None:
        rows = rows[config.shard[0] - 1::config.shard[1]]
    for spec, parsed, label in rows:
        backends = config.backends or (parsed.default_backend,)
        refs += [ModelRef(spec, b, s, label) for b in backends for s in config.sources]
    return refs


def load_model(spec: "str | ModelSpec", *, input_size: int | None = None, trust_pickle: bool = False, seed: int = 0,
               backend: Backend = "torch", providers: tuple[str, ...] = (), safe_globals: tuple[str, ...] = (),
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> LoadedModel:
    """Load a model spec the way a run sees it, one loading step after another: the stored model, its
    normalisation, its input size, its negative control, its backend. Each step returns a new (frozen)
    :class:`~resstream_assert.loading.LoadedModel`.

    ``backend="onnx"`` runs a torch model through its own ONNX export (cached on disk). A factory
    model's input size, when not given, is read from its stem (32 px for a CIFAR-style stem that
    does not downsample before its first block), with a :class:`~resstream_assert.errors.ResstreamWarning`.
    ``mean`` and ``std`` (given together) replace the model's own normalisation (its zoo card's, its ONNX
    file's metadata, else ImageNet's); ``normalisation_source`` says which one the model uses.

    Example:
        >>> m = load_model("torchvision:resnet18+nc-id")  # doctest: +SKIP
        >>> m.control, m.backend  # doctest: +SKIP
        ('nc-id', 'torch')
    """
    from resstream_assert.config import checked_normalisation
    from resstream_assert.loading import as_spec
    from resstream_assert.loading import load_stored

    norm = checked_normalisation(mean, std)
    parsed = as_spec(spec)
    if parsed.kind == "onnx":
        from resstream_assert.loading.onnx_file import load_onnx

        return load_onnx(parsed, input_size, providers, norm)  # refuses a control: it would need the torch model
    loaded = load_stored(replace(parsed, control=None), input_size=input_size, trust_pickle=trust_pickle,
                         safe_globals=safe_globals)
    if norm is not None:  # the one place a model's normalisation is replaced
        loaded = loaded.with_(mean=norm[0], std=norm[1], normalisation_source="option")
    if input_size is None and loaded.input_size_source == "default":
        loaded = _guessed_input_size(loaded, parsed.label)
    if parsed.control:
        loaded = _with_control(loaded, parsed.control, parsed.text, seed)
    if backend == "onnx":
        from resstream_assert.loading.onnx_export import to_onnx_backend

        return to_onnx_backend(loaded, providers)
    return loaded


def _guessed_input_size(loaded: LoadedModel, label: str) -> LoadedModel:
    """A factory model without a stated input size: the size its stem implies, with a warning that says so."""
    from resstream_assert.discovery.stem import guess_input_size

    size, why = guess_input_size(loaded.module)
    warnings.warn(ResstreamWarning(
        f"{label}: input size {size} px, {why}. Pass the size the model was trained at "
        "with --resstream-input-size N (Python: input_size=N) to silence this."), stacklevel=3)
    return loaded.with_(input_size=size, input_size_source=why, input_size_guessed=True)


def _with_control(loaded: LoadedModel, control: str, spec_text: str, seed: int) -> LoadedModel:
    """The model with its negative control applied (a model edit: a new module, a new digest)."""
    from resstream_assert.interventions.controls import apply_control
    from resstream_assert.loading import weights_digest

    module = apply_control(loaded.module, control, seed=seed, input_size=loaded.input_size).eval()
    return loaded.with_(module=module, control=control, digest=weights_digest(module, spec_text))
