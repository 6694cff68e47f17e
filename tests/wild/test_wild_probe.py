"""Probe folders with the image files people actually have: 16-bit, palette, grayscale, RGBA,
CMYK, tiny and truncated images (``checkpoints.IMAGES``). Each must load with the colour its
generator describes, or be refused with a ``ProbeError`` naming the file.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from resstream_assert import errors
from resstream_assert.stimuli.probe import folder_probe

from . import checkpoints

SIZE = 32

def _params():
    return [pytest.param(name, id=name) for name in checkpoints.IMAGES]


@pytest.mark.parametrize("name", _params())
def test_probe_image(name, tmp_path):
    path, expect = checkpoints.IMAGES[name](tmp_path)
    if expect["ok"]:
        probe = folder_probe(tmp_path, size=SIZE)
        assert probe.images.shape == (1, 3, SIZE, SIZE)
        img = probe.images[0].reshape(3, -1).astype(int)
        want = np.array(expect["rgb"])[:, None]
        worst = int(np.abs(img - want).max())
        assert worst <= expect["tol"], (f"{path.name}: pixels span {img.min(1).tolist()}..{img.max(1).tolist()}, "
                                        f"expected {expect['rgb']} +- {expect['tol']}")
    else:
        with pytest.raises(getattr(errors, expect["error"])) as info:
            folder_probe(tmp_path, size=SIZE)
        assert re.search(expect["match"], str(info.value))


def test_probe_folder_tree(tmp_path):
    """All readable kinds together as an ImageFolder tree: one class per kind, labels by sorted name."""
    root, expects = checkpoints.make_probe_folder(tmp_path)
    probe = folder_probe(root, size=SIZE)
    assert sorted(probe.names) == sorted(expects)
    assert probe.class_names == tuple(sorted(p.split("/")[0] for p in expects))
    assert probe.labels.tolist() == list(range(len(expects)))
