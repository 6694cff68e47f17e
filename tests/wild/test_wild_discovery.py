"""Residual-block discovery on networks written the way public repositories write them.

For every architecture in ``architectures.EXPECTED`` the discoverer must find each residual
add ``x + f(x)`` and describe it correctly: block count, per-block projection flag (a
non-identity shortcut), post-add activation, channels, the branch gain, and, from those, the
identity-shortcut blocks claim C3 analyses. (The defects this corpus found, an ``nn.Identity()``
shortcut read as a projection and no branch gain behind a squeeze-excitation gate, were first
``xfail(strict=True)``; both are fixed.)
"""

from __future__ import annotations

import functools

import pytest
import torch

from resstream_assert.discovery import discover

from . import architectures as arch

def _params(test: str):
    return [pytest.param(name, id=name) for name in arch.EXPECTED]


@functools.lru_cache(maxsize=None)
def _built(name: str):
    torch.manual_seed(0)
    return arch.FACTORIES[name](num_classes=10).eval()


@functools.lru_cache(maxsize=None)
def _rmap(name: str):
    return discover(_built(name), arch.INPUT_SIZE)


@pytest.mark.parametrize("name", _params("forward"))
def test_factory_builds_and_runs_at_32px(name):
    with torch.no_grad():
        out = _built(name)(torch.zeros(2, 3, arch.INPUT_SIZE, arch.INPUT_SIZE))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("name", _params("n_blocks"))
def test_block_count(name):
    assert len(_rmap(name)) == arch.EXPECTED[name].n_blocks, _rmap(name).table()


@pytest.mark.parametrize("name", _params("projection"))
def test_projection_flags(name):
    got = tuple(b.projection for b in _rmap(name))
    assert got == arch.EXPECTED[name].projection, _rmap(name).table()


@pytest.mark.parametrize("name", _params("post_activation"))
def test_post_activation_flags(name):
    got = tuple(b.post_activation for b in _rmap(name))
    assert got == arch.EXPECTED[name].post_activation, _rmap(name).table()


@pytest.mark.parametrize("name", _params("channels"))
def test_channels(name):
    got = tuple(b.channels for b in _rmap(name))
    assert got == arch.EXPECTED[name].channels, _rmap(name).table()


@pytest.mark.parametrize("name", _params("c3_blocks"))
def test_c3_identity_blocks(name):
    # The selection rule of claims/weights.py: all but the first block, identity shortcuts only.
    got = tuple(b.index for b in _rmap(name) if b.index >= 1 and not b.projection)
    expected = arch.EXPECTED[name]
    assert got == expected.c3_blocks, _rmap(name).table()
    assert bool(got) == expected.c3_has_identity_blocks


@pytest.mark.parametrize("name", _params("gain_kind"))
def test_branch_gain_kind(name):
    got = tuple(b.gain_kind for b in _rmap(name))
    assert got == arch.EXPECTED[name].gain_kind, _rmap(name).table()
    for b in _rmap(name):
        if b.gain_kind == "bn":
            assert b.branch_gain is not None and len(b.branch_gain) == b.channels


def test_expectations_are_machine_readable():
    import json

    table = {name: e.as_dict() for name, e in arch.EXPECTED.items()}
    assert json.loads(json.dumps(table)) == table
    assert table["resnet20"]["c3_blocks"] == [1, 2, 4, 5, 7, 8]
    assert not table["timm_resnet10t"]["c3_has_identity_blocks"]  # 1 block per stage: only projections after the first
