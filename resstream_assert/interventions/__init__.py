"""Interventions: experiments that change the model or run it again (lesions, controls, ...).

They use load, discover and capture, and hand numpy results to the claims; they never
import a claim. A claim that needs one says so in its spec (``ClaimSpec.prepare``): from
the measures it builds a *request* (a frozen dataclass with a hashable ``key`` and a
``run(env)`` method, defined here), and the pipeline runs it once per model with an
:class:`InterventionEnv` and passes the result to the claim.

Modules: ``controls`` (the negative controls NC-id, NC-plain, NC-perm, NC-rand: model edits
on load), ``lesion`` (C10's mean-ablations under zoom), ``reference`` (C11's ImageNet
reference lesions), ``segment_torch`` / ``segment_onnx`` (re-run only the part of a graph an
edit changes, many edits at once), ``scaling`` (X1/X2: gain and shortcut scaling),
``downstream`` (X3: single-channel gain edits read at the output), ``attribution`` (X4:
captum), ``options`` (X1-X4 options and the guard that the user's model never changes),
``runners`` (what the X1-X3 runners of each backend share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Protocol

if TYPE_CHECKING:  # types only: nothing here imports torch
    from resstream_assert.discovery.residual_map import ResidualMap
    from resstream_assert.loading.spec import LoadedModel
    from resstream_assert.stimuli.probe import ProbeSet

__all__ = ["InterventionEnv", "Request"]


@dataclass(frozen=True)
class InterventionEnv:
    """What an intervention may use: the model, its map, the probe set and how to report progress.

    ``probe`` is the run's probe set at the model's input size; ``probe_source`` says where it
    came from (``None`` for the embedded set, else a folder), because whether its labels fit
    the model's classes depends on it.

    Example:
        >>> env = InterventionEnv(loaded, rmap, probe, device="cpu")  # doctest: +SKIP
        >>> env.say("[resstream] lesions ...")  # doctest: +SKIP
    """

    loaded: "LoadedModel"
    rmap: "ResidualMap"
    probe: "ProbeSet"
    probe_source: str | None = None
    device: str = "cpu"
    log: Callable[[str], None] | None = None
    counters: dict = field(default_factory=dict)

    def say(self, line: str) -> None:
        """Print a progress line through the run's logger (pytest shows it past its capture)."""
        if self.log is not None:
            self.log(line)


class Request(Protocol):
    """An intervention to run: hashable ``key`` (for the pipeline's memo) and ``run(env)`` -> numpy data."""

    @property
    def key(self) -> Hashable: ...

    def run(self, env: InterventionEnv) -> Any: ...
