"""Knobs of the X1-X4 interventions (``--resstream-intervention KEY=VALUE``), and the model guard.

Numpy only: claims read these types. The guard hashes the model before and after an
intervention and raises if anything changed (interventions edit copies and activations,
never the user's model).
"""

from __future__ import annotations

import hashlib
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np

from resstream_assert.errors import InterventionError

#: X1/X2's default factors: 7 log-spaced from 0.25 to 4, with 1 in the middle.
DEFAULT_FACTORS: tuple[float, ...] = tuple(float(f) for f in np.round(np.geomspace(0.25, 4.0, 7), 6))
#: Factors X1-X3 may scale a gain or shortcut by: beyond them float32 activations overflow or vanish.
FACTOR_RANGE = (1e-3, 1e3)
VARIANTS = ("held", "scaled")  # X1: gamma scaled with beta held, or gamma and beta scaled together
ATTRIBUTIONS = ("ig", "conductance")


@dataclass(frozen=True)
class InterventionOptions:
    """Options of X1-X4.

    ``channels`` per block are sampled (seeded) for X1/X2 when a block has more (all
    otherwise); X1/X2 use the first ``images`` probe images; ``batch_size`` counts stacked
    images per call (edit groups x images). X3 edits ``x3_channels`` channels per category
    and block, each at every factor in ``x3_factors``, on ``x3_images`` images. X4
    attributes with captum (``attribution``: ``ig`` = LayerIntegratedGradients, or
    ``conductance`` = LayerConductance) in ``n_steps`` steps on ``x4_images`` images.

    Example:
        >>> InterventionOptions.from_mapping({"channels": 32}).channels
        32
    """

    factors: tuple[float, ...] = DEFAULT_FACTORS
    variants: tuple[str, ...] = VARIANTS
    channels: int = 64
    images: int = 512
    batch_size: int = 256
    x3_channels: int = 8
    x3_factors: tuple[float, ...] = (0.5,)
    x3_images: int = 128
    attribution: str = "ig"
    n_steps: int = 16
    x4_images: int = 64
    seed: int = 0

    @classmethod
    def from_mapping(cls, mapping: Mapping | None, **defaults) -> "InterventionOptions":
        """Options from ``{name: value}`` over ``defaults``; an unknown name raises ValueError listing the known.

        Example:
            >>> InterventionOptions.from_mapping({"factors": [2, 1, 0.5]}).factors
            (0.5, 1, 2)
        """
        names = {f.name for f in fields(cls)}
        kw = dict(defaults)
        for key, value in (mapping or {}).items():
            if key not in names:
                raise ValueError(f"Unknown intervention option {key!r}; known: {', '.join(sorted(names))}.")
            if key in ("factors", "x3_factors", "variants") and not isinstance(value, (list, tuple)):
                value = (value,)
            if key == "factors" and all(isinstance(v, (int, float)) for v in value):
                value = sorted(value)  # ascending: the flip factors walk down and up from 1
            kw[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kw)

    def check(self) -> "InterventionOptions":
        """Raise ValueError naming the first unusable value (checked at start-up, before any test).

        Example:
            >>> InterventionOptions(factors=(0.5, 2)).check()
            Traceback (most recent call last):
            ...
            ValueError: factors=(0.5, 2): need at least 3 positive factors including 1, e.g. factors=0.25,0.5,1,2,4
        """
        ints = {"channels": 1, "images": 1, "batch_size": 1, "x3_channels": 1, "x3_images": 1, "n_steps": 2,
                "x4_images": 1, "seed": 0}
        for name, least in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"{name}={v}: must be a whole number >= {least}")
        f = tuple(self.factors)
        if len(f) < 3 or not _positive(f) or 1.0 not in [float(x) for x in f] or len(set(map(float, f))) != len(f):
            raise ValueError(f"factors={f}: need at least 3 positive factors including 1, e.g. factors=0.25,0.5,1,2,4")
        low, high = FACTOR_RANGE
        for name, values in (("factors", f), ("x3_factors", tuple(self.x3_factors))):
            out = [v for v in values if _positive([v]) and not low <= float(v) <= high]
            if out:
                raise ValueError(f"{name}={values}: {out[0]:g} is outside {low:g} to {high:g}; a gain or shortcut "
                                 "scaled that far overflows float32 activations or zeroes them, which reads as a "
                                 "verdict change that is not the model's")
        x3 = tuple(self.x3_factors)
        if not x3 or not _positive(x3) or any(float(x) == 1.0 for x in x3):
            raise ValueError(f"x3_factors={x3}: need positive factors other than 1, e.g. x3_factors=0.5,2")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"variants={tuple(self.variants)}: use held and/or scaled, e.g. variants=held,scaled")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants={tuple(self.variants)}: each variant once, e.g. variants=held,scaled")
        if self.attribution not in ATTRIBUTIONS:
            raise ValueError(f"attribution={self.attribution!r}: use one of {', '.join(ATTRIBUTIONS)}")
        return self


def _positive(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in values)


def sample_channels(n_channels: int, k: int, seed: int, index: int, stream: str = "scaling") -> np.ndarray:
    """``k`` channel indices of a block with ``n_channels``, sorted (all of them when ``k >= n_channels``).

    Seeded by (seed, stream, block index) only, so every claim that samples a block gets the same channels.

    Example:
        >>> sample_channels(10, 20, 0, 3).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> len(sample_channels(512, 64, 0, 3))
        64
    """
    if k >= n_channels:
        return np.arange(n_channels)
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode()), index + 1])
    return np.sort(rng.choice(n_channels, k, replace=False))


def plans_digest(plans: tuple[tuple[int, np.ndarray], ...]) -> str:
    """Hex digest of ``(block index, channel indices)`` plans: the part of a request's key that
    names its channels (arrays are not hashable).

    Example:
        >>> plans_digest(((3, np.array([0, 5])),)) == plans_digest(((3, [0, 5]),))
        True
    """
    h = hashlib.sha256()
    for index, chans in plans:
        h.update(f"{index}:".encode() + np.ascontiguousarray(chans, np.int64).tobytes())
    return h.hexdigest()


def fingerprint(loaded) -> str:
    """A hash of everything an intervention must leave alone: weights and buffers, or the ONNX file's bytes.

    Example:
        >>> fingerprint(loaded) == fingerprint(loaded)  # doctest: +SKIP
        True
    """
    if getattr(loaded, "backend", "torch") == "onnx":
        from pathlib import Path

        return hashlib.sha256(Path(loaded.onnx_path).read_bytes()).hexdigest()
    from resstream_assert.loading.torch_model import weights_digest

    module = loaded.module
    modes = "".join("t" if m.training else "e" for m in module.modules())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())
    grads = sum(p.grad is not None for p in module.parameters())
    return weights_digest(module, f"{modes}|{hooks}|{grads}")


@contextmanager
def model_unchanged(loaded, what: str):
    """Raise :class:`InterventionError` if ``loaded``'s weights, buffers, modes, hooks or grads changed inside.

    Example:
        >>> with model_unchanged(loaded, "X1"):  # doctest: +SKIP
        ...     run_edits()
    """
    before = fingerprint(loaded)
    yield
    if fingerprint(loaded) != before:
        raise InterventionError(f"{what} changed the model it was given (weights, modes, hooks or grads); this is a "
                                "bug in resstream_assert: interventions must work on copies. Please report it.")
