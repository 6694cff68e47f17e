"""The ResidualMap: residual blocks of a model in order, each with its canonical sites.

This module is data only (numpy, no torch), so that the ONNX and torch discoverers
produce the same objects and everything downstream reads one type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

#: Canonical sites of a residual block, in forward order (see DESIGN.md).
SITES: tuple[str, ...] = ("resid_pre", "skip_out", "branch_out", "resid_sum", "resid_post")

#: How the per-channel branch gain was obtained.
GAIN_KINDS = ("bn", "layer_scale", "fused_conv_proxy", "none")


@dataclass(frozen=True)
class Block:
    """One residual block: ``resid_sum = skip_out + branch_out``.

    ``sites`` maps each canonical site to the native name behind it (a module path such
    as ``layer2.0.bn2``, an FX node such as ``layer2.0.add``, or an ONNX tensor name).
    ``branch_gain`` is ``abs(gamma)`` of the branch's last affine op (or the layer-scale
    vector, or a fused-conv proxy); ``conv_magnitude`` the mean ``abs`` weight of the last
    branch conv per output channel. Either is ``None`` where the branch has no such op.

    Example:
        >>> b = Block(index=0, name="layer1.0", sites={s: s for s in SITES}, channels=64)
        >>> b.label
        'layer1.0'
    """

    index: int
    name: str
    sites: dict[str, str]
    channels: int
    spatial: tuple[int, int] | None = None
    projection: bool = False
    post_activation: bool = True
    gain_kind: str = "none"
    gain_source: str | None = None
    conv_source: str | None = None
    branch_gain: np.ndarray | None = field(default=None, repr=False, compare=False)
    conv_magnitude: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """The name shown in tables (the native block name)."""
        return self.name

    @property
    def gain_is_proxy(self) -> bool:
        """True when ``branch_gain`` is not a true gamma (BN folded into a Conv)."""
        return self.gain_kind == "fused_conv_proxy"

    def to_dict(self) -> dict:
        """JSON-ready description (no arrays)."""
        return {
            "index": self.index,
            "name": self.name,
            "sites": dict(self.sites),
            "channels": self.channels,
            "spatial": list(self.spatial) if self.spatial else None,
            "projection": self.projection,
            "post_activation": self.post_activation,
            "branch_gain": {"kind": self.gain_kind, "source": self.gain_source,
                            "proxy": self.gain_is_proxy},
            "conv_source": self.conv_source,
        }


@dataclass(frozen=True)
class ResidualMap:
    """The residual blocks of one model, in forward order.

    Example:
        >>> rmap = ResidualMap("toy", 32, (Block(0, "b0", {s: s for s in SITES}, 8),))
        >>> len(rmap), rmap["b0"].channels
        (1, 8)
    """

    model: str
    input_size: int
    blocks: tuple[Block, ...]
    backend: str = "torch"

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[Block]:
        return iter(self.blocks)

    def __getitem__(self, key: int | str) -> Block:
        if isinstance(key, int):
            return self.blocks[key]
        for b in self.blocks:
            if b.name == key or key in b.sites.values():
                return b
        raise KeyError(f"no block named {key!r}; blocks are {[b.name for b in self.blocks]}")

    def to_dict(self) -> dict:
        """JSON-ready description: model, input size, backend and every block."""
        return {"model": self.model, "input_size": self.input_size, "backend": self.backend,
                "blocks": [b.to_dict() for b in self.blocks]}

    def table(self) -> str:
        """A text table of the blocks, for terminals and ``--resstream-list-sites``."""
        rows = [("#", "block", "ch", "HxW", "skip_out", "branch_out", "resid_post", "gain")]
        for b in self.blocks:
            hw = f"{b.spatial[0]}x{b.spatial[1]}" if b.spatial else "?"
            gain = b.gain_kind + (" (proxy)" if b.gain_is_proxy else "")
            rows.append((str(b.index), b.name, str(b.channels), hw, b.sites["skip_out"], b.sites["branch_out"],
                         b.sites["resid_post"], gain))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"{self.model}: {len(self)} residual blocks, input {self.input_size}px, backend {self.backend}"]
        lines += ["  ".join(c.rjust(w) if i in (0, 2) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                  for r in rows]
        return "\n".join(lines)
