"""Structure checks run before any claim: the model has a residual stream and capture is faithful."""

from __future__ import annotations

import numpy as np

from resstream_assert.discovery.residual_map import SITES


def test_residual_blocks_discovered(resstream_map):
    """Every block has all canonical sites, a channel count and a spatial size."""
    assert len(resstream_map) > 0
    for block in resstream_map:
        assert set(block.sites) == set(SITES), block.name
        assert block.channels > 0 and block.spatial and min(block.spatial) >= 1, block.name


def test_capture_is_faithful_and_additive(resstream_responses, resstream_map, resstream_probe):
    """Capture matched the plain forward (checked inside capture) and resid_sum = skip_out + branch_out."""
    assert resstream_responses.n_images == len(resstream_probe)
    for block in resstream_map:
        skip, branch = (resstream_responses.get(block, s) for s in ("skip_out", "branch_out"))
        summed = resstream_responses.get(block, "resid_sum")
        if resstream_responses.center[f"{block.index}/resid_sum"].dtype == np.float16:
            # each of the three was rounded to float16 (relative 2^-11) when stored
            bound = 2.0**-10 * (np.abs(skip) + np.abs(branch) + np.abs(summed)) + 1e-5
            assert np.all(np.abs(skip + branch - summed) <= bound), block.name
            continue
        scale = float(np.abs(summed).max()) + 1e-6
        assert np.abs(skip + branch - summed).max() <= 1e-4 * scale + 1e-5, block.name
