"""What a claim is and what it may read: :class:`ClaimSpec` (a registered claim) and
:class:`ClaimContext` (the map, per-block measures, responses, options and seed of one model).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import numpy as np

from resstream_assert.claims.block_rows import row
from resstream_assert.claims.claim_options import ClaimOptions
from resstream_assert.claims.decision import Boundary
from resstream_assert.results import BlockRow, ClaimResult, Verdict

if TYPE_CHECKING:
    from resstream_assert.capture.responses import Responses
    from resstream_assert.discovery.residual_map import ResidualMap
    from resstream_assert.interventions import Request
    from resstream_assert.loading.spec import ModelSpec
    from resstream_assert.measures import BlockMeasures


class _HasBlock(Protocol):
    """What :meth:`ClaimContext.too_few` reads from a block's record: its name."""

    @property
    def block(self) -> str: ...


@dataclass(frozen=True)
class ClaimSpec:
    """A registered claim: metadata plus its evaluate function.

    ``needs`` are the stimulus variants whose responses the claim reads. ``prepare``, when
    set, builds from the context the intervention request the claim needs (a claim that
    runs the model again, e.g. C10's lesions); the pipeline runs it and hands the result to
    ``evaluate`` as ``ctx.intervention``. An ``opt_in`` claim (one that costs minutes on a
    CPU) runs only when it is selected by id (``--resstream-claims X3``, ``claims=["X3"]``).
    """

    id: str
    title: str
    source: str
    test: str
    evaluate: Callable[["ClaimContext"], ClaimResult]
    needs: tuple[str, ...] = ("id",)
    mostly: float = 0.5
    gate: bool = True
    prepare: Callable[["ClaimContext"], "Request"] | None = None
    opt_in: bool = False
    boundary: Boundary | None = None


@dataclass(frozen=True)
class ClaimContext:
    """Everything a claim may read: the map, per-block measures, responses (numpy), options, seed.

    The pipeline builds one per model and gives each claim its own copy through
    :meth:`for_claim` (with the claim's spec and its intervention's result).

    Example:
        >>> ctx = ClaimContext("zoo:resnet18-synth96", "torch", rmap, measures, responses)  # doctest: +SKIP
        >>> REGISTRY["C3"].evaluate(ctx.for_claim(REGISTRY["C3"])).verdict  # doctest: +SKIP
    """

    model: str  # the model's label in reports
    backend: str
    rmap: "ResidualMap | None"  # None only in a report-only table built from measures (C1-agree)
    measures: tuple["BlockMeasures", ...]
    responses: Mapping[str, "Responses"]
    options: ClaimOptions = ClaimOptions()
    seed: int = 0
    spec: ClaimSpec | None = None
    intervention: Any = None  # what spec.prepare's request returned (numpy data), or None
    model_spec: "ModelSpec | None" = None  # the run's parsed spec (None for synthetic responses)

    def for_claim(self, spec: ClaimSpec, intervention: Any = None) -> "ClaimContext":
        """This context for one claim."""
        return replace(self, spec=spec, intervention=intervention)

    @property
    def map(self) -> "ResidualMap":
        """The model's residual map (a claim that reads blocks' structure needs one).

        Example:
            >>> ctx.map["layer2.1"].projection  # doctest: +SKIP
            False
        """
        if self.rmap is None:
            raise ValueError("this ClaimContext has no residual map (a report-only table built from measures)")
        return self.rmap

    @property
    def claim(self) -> ClaimSpec:
        """The claim being evaluated (set by :meth:`for_claim`)."""
        if self.spec is None:
            raise ValueError("this ClaimContext has no claim: use ctx.for_claim(REGISTRY[id])")
        return self.spec

    def boundary(self) -> Boundary | None:
        """The claim's boundary, with its size set by the user's ``min_effect`` for this claim when given.

        Example:
            >>> ctx.for_claim(REGISTRY["C3"]).boundary().delta  # doctest: +SKIP
            -0.1
        """
        b = self.claim.boundary
        given = self.options.min_effect
        size = dict(given).get(self.claim.id) if isinstance(given, tuple) else given
        if b is None or size is None:
            return b
        return replace(b, delta=b.direction * float(size))

    def rng(self, block: int = -1, stream: str = "") -> np.random.Generator:
        """A generator seeded by (seed, claim, block): results never depend on evaluation order."""
        name = self.claim.id + (f"/{stream}" if stream else "")
        return np.random.default_rng([self.seed, zlib.crc32(name.encode()), block + 1])

    def analysed(self) -> list["BlockMeasures"]:
        """The blocks a claim analyses (all but the first by default, as in the papers)."""
        ms = list(self.measures)
        return ms[1:] if self.options.skip_first_block and len(ms) > 1 else ms

    def lacking(self, bm: "BlockMeasures", *needs: str) -> BlockRow | None:
        """A not-applicable row when ``bm`` lacks quantities (``scale``, ``flip``, ``zoom``), else None."""
        why = lacks(bm, *needs)
        return row(bm.block, verdict=Verdict.NOT_APPLICABLE, note=why) if why else None

    def too_few(self, bm: "_HasBlock", n: int, *, what: str = "defined channels", floor: int | None = None,
                values: Mapping | None = None, suffix: str = "") -> BlockRow | None:
        """An inconclusive row when ``n < floor`` (default ``options.min_channels``), else None.

        Example:
            >>> ctx.too_few(bm, 3).note  # doctest: +SKIP
            '3 defined channels < 10'
        """
        floor = self.options.min_channels if floor is None else floor
        if n >= floor:
            return None
        return row(bm.block, n=int(n), values=values, note=f"{int(n)} {what} < {floor}{suffix}")


def lacks(bm: "BlockMeasures", *needs: str) -> str:
    """Why ``bm`` lacks quantities a claim needs (``""`` when it has them).

    ``scale``: the S/Sinv quantities; ``flip``: the flip null; ``zoom``: zoom-response curves.

    Example:
        >>> lacks(bm, "scale", "flip")  # doctest: +SKIP
        'needs the stimulus variants S and Sinv (no scale quantities measured)'
    """
    if ("scale" in needs or "flip" in needs) and not bm.scale:
        return "needs the stimulus variants S and Sinv (no scale quantities measured)"
    if "flip" in needs and "sm_b_flip" not in bm.scale:
        return "needs the stimulus variant flip for the transform-control null"
    if "zoom" in needs and not bm.zoom:
        return "needs the zoom variants (zoom-response curves not measured)"
    return ""
