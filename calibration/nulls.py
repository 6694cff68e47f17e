"""Null instances built from a trained model's captured responses (numpy only).

Each transform below takes a model's map and its responses to every stimulus variant and
returns responses in which one claim's property is absent, while everything else a trained
network has (its spectrum, its channels' scales and offsets, its real zoom responses, its
BN gains) is kept. Unlike the synthetic generator (:mod:`calibration.generator`) nothing here
is built to satisfy a test's assumptions: the statistics meet the dependence, skew and
offsets that real responses have.

- :func:`permute_branch` is NC-perm at the response level: one random permutation of each
  block's branch channels, the same in every variant (what permuting the last branch conv and
  its BN does to the block's sites for the same input), with the sums recomputed. Each branch
  channel keeps its own response to every image and transform, but no longer sits beside the
  shortcut channel it was trained with: C5, C6, C8 and C9 lose what they test.
- :func:`decouple_images` permutes each block's branch responses over *images* (the same
  permutation in every variant and channel of the block): input and branch become independent
  across images while every channel's distribution is kept, C4's null.
- :func:`shuffle_gains` permutes each block's branch gains against its channels (C3's null).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from resstream_assert.capture.responses import Responses, site_key


def _recombined(rmap, resp: dict, branch_of) -> dict:
    """Every variant with each block's branch replaced by ``branch_of(block, array)`` and the sums recomputed."""
    out = {}
    for v, r in resp.items():
        center = dict(r.center)
        for b in rmap:
            branch = branch_of(b, r.get(b, "branch_out"))
            total = r.get(b, "skip_out") + branch
            center[site_key(b.index, "branch_out")] = branch
            center[site_key(b.index, "resid_sum")] = total
            center[site_key(b.index, "resid_post")] = np.maximum(total, 0) if b.post_activation else total
        out[v] = Responses(v, center, center, r.logits)
    return out


def permute_branch(rmap, resp: dict, rng: np.random.Generator) -> dict:
    """NC-perm at the response level: each block's branch channels permuted, the same way in every variant.

    Example:
        >>> from calibration.generator import synthetic_responses
        >>> rmap, resp = synthetic_responses(0, n_images=16, channels=4, variants=("id", "S"))
        >>> out = permute_branch(rmap, resp, np.random.default_rng(0))
        >>> sorted(out) == ["S", "id"], out["S"].get(3, "branch_out").shape
        (True, (16, 4))
    """
    perms = {b.index: rng.permutation(b.channels) for b in rmap}
    return _recombined(rmap, resp, lambda b, a: a[:, perms[b.index]])


def decouple_images(rmap, resp: dict, rng: np.random.Generator) -> dict:
    """Each block's branch responses permuted over images (one permutation per block, every variant alike).

    Example:
        >>> from calibration.generator import synthetic_responses
        >>> rmap, resp = synthetic_responses(0, n_images=16, channels=4)
        >>> a = decouple_images(rmap, resp, np.random.default_rng(0))["id"].get(3, "branch_out")
        >>> bool(np.allclose(np.sort(a, 0), np.sort(resp["id"].get(3, "branch_out"), 0)))
        True
    """
    n = next(iter(resp.values())).n_images
    perms = {b.index: rng.permutation(n) for b in rmap}
    return _recombined(rmap, resp, lambda b, a: a[perms[b.index]])


def shuffle_gains(measures, rng: np.random.Generator) -> tuple:
    """Measures with each block's branch gains permuted against its channels (M and everything else kept).

    Example:
        >>> shuffle_gains((), np.random.default_rng(0))
        ()
    """
    return tuple(replace(bm, branch_gain=None if bm.branch_gain is None else rng.permutation(bm.branch_gain))
                 for bm in measures)
