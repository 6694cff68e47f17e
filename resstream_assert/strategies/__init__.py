"""Hypothesis strategies for property tests of residual networks: for us and for users.

``residual_networks()`` draws ``(module, blueprint)``: a tiny random residual network in eval
mode and the frozen description of what was built (block kinds: torchvision BasicBlock /
Bottleneck, pre-activation, ConvNeXt-like; shortcuts: identity, 1x1 projection, CIFAR
option-A zero-pad, ``nn.Identity``, an empty ``nn.Sequential``, a bare tensor; with or
without a post-add activation; the add written four ways). ``probe_sets()`` draws probe
images with labels. ``loaded_model`` and ``permute_channels`` turn them into what the
pipeline's functions take.

For any residual net built this way, discovery finds exactly the blocks built::

    from hypothesis import given, settings
    from resstream_assert.discovery.torch_graph import discover_torch
    from resstream_assert.strategies import residual_networks

    @settings(max_examples=20, deadline=None)
    @given(residual_networks())
    def test_discovery_finds_the_blocks_built(net):
        module, bp = net
        rmap = discover_torch(module, bp.input_size)
        assert [(b.name, b.channels, b.spatial, b.projection) for b in rmap] == \\
               [(s.name, s.channels, (s.spatial, s.spatial), s.projection) for s in bp.blocks]

Needs hypothesis: ``pip install 'resstream_assert[strategies]'``.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("resstream_assert.strategies needs hypothesis: pip install 'resstream_assert[strategies]'") \
        from exc

import hashlib
from dataclasses import replace
from typing import Mapping

import numpy as np

from resstream_assert.strategies.networks import (ADD_OPS, BLOCK_KINDS, SHORTCUT_KINDS, BlockSpec,
                                                  NetworkBlueprint, build_network, network_blueprints,
                                                  residual_networks)
from resstream_assert.strategies.probes import ProbeArrays, probe_sets

__all__ = ["BLOCK_KINDS", "SHORTCUT_KINDS", "ADD_OPS", "BlockSpec", "NetworkBlueprint",
           "ProbeArrays", "network_blueprints", "build_network", "residual_networks", "probe_sets", "loaded_model",
           "permute_channels"]


def loaded_model(module, blueprint: NetworkBlueprint):
    """A :class:`~resstream_assert.loading.LoadedModel` of a drawn network, for capture, export and discovery.

    The spec and digest are a hash of the blueprint, so captures of the same draw share a cache key.

    Example:
        >>> module, bp = residual_networks(depth=1, input_sizes=16).example()
        >>> loaded_model(module, bp).input_size
        16
    """
    from resstream_assert.loading import LoadedModel

    digest = hashlib.sha256(repr(blueprint).encode()).hexdigest()[:16]
    return LoadedModel(spec=f"hypothesis:{digest}", name=f"hypothesis-{digest[:8]}", backend="torch", module=module,
                       input_size=blueprint.input_size, num_classes=blueprint.num_classes, digest=digest)


def permute_channels(rmap, responses: Mapping, seed: int):
    """``(rmap, responses)`` with each block's channels relabelled by one seeded permutation per block.

    Every site of block ``b`` that has its channels (all but ``resid_pre``, which has the previous
    block's), its branch gain and its conv magnitude get the same permutation, so each channel
    keeps all its numbers under another index: a claim's verdict must not change.

    Example:
        >>> rmap2, resp2 = permute_channels(rmap, {"id": responses}, seed=0)  # doctest: +SKIP
    """
    from resstream_assert.capture.responses import Responses

    perms = {b.index: np.random.default_rng([seed, b.index]).permutation(b.channels) for b in rmap}
    pick = lambda a, b: None if a is None else np.asarray(a)[perms[b.index]]  # noqa: E731
    blocks = tuple(replace(b, branch_gain=pick(b.branch_gain, b), conv_magnitude=pick(b.conv_magnitude, b))
                   for b in rmap)
    index = {b.index: b for b in rmap}

    def table(t: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for key, arr in t.items():
            block, site = key.split("/", 1)
            out[key] = arr if site == "resid_pre" else arr[:, perms[index[int(block)].index]]
        return out

    resp = {v: Responses(r.variant, table(r.center), table(r.mean), r.logits, table(r.maps))
            for v, r in responses.items()}
    return replace(rmap, blocks=blocks), resp
