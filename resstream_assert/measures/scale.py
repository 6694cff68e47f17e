"""Scale quantities: ``SM_B`` / ``SM_I`` with their nulls (C5) and zoom-response curves with
their flatness (C6, C9), from the responses to rescaled copies of each channel's stimuli."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from resstream_assert.discovery.residual_map import Block
from resstream_assert.measures.ratios import MeasureOptions, mean_over, natural_scale
from resstream_assert.stimuli.variants import parse_variant


def scale_quantities(block: Block, resp: Mapping, xi: np.ndarray, xb: np.ndarray, i_id: np.ndarray,
                     b_id: np.ndarray, opts: MeasureOptions,
                     measured: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """SM_B, SM_I (spec §2.7) and their nulls (C5): reversed direction, flip, channel mismatch; with the
    symmetric pair (``S_sym``, ``Sinv_sym``) also ``delta_b_sym``, the branch's ReLU'd response to the zoomed-in
    minus the zoomed-out input exemplars (C6's direction).

    ``resp`` holds the stimuli's responses per variant; ``i_id``/``b_id`` are the probe's (floors).
    ``measured`` (given stimuli) limits the mismatch null's derangement to channels that have stimuli.

    Example:
        >>> sorted(scale_quantities(rmap[3], responses, xi, xb, i_id, b_id, MeasureOptions()))[:3]  # doctest: +SKIP
        ['delta_b', 'delta_b_flip', 'delta_b_rev']
    """
    if not all(v in resp for v in ("S", "Sinv")):
        return {}
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    s_i, s_b = resp["id"].get(block, "skip_out"), resp["id"].get(block, "branch_out")
    i_xb = relu(mean_over(s_i, xb))
    # SM divides by each site's response to its own exemplars; below the floor it is undefined (W2).
    norm_b = _inverse_floored(mean_over(s_b, xb), opts.floor * natural_scale(b_id))
    norm_i = _inverse_floored(mean_over(s_i, xi), opts.floor * natural_scale(i_id))

    def deltas(v_b: str, v_i: str, xi_=xi):
        d_b = relu(mean_over(resp[v_b].get(block, "branch_out"), xi_)) - relu(mean_over(s_b, xi_))
        d_i = relu(mean_over(resp[v_i].get(block, "skip_out"), xb)) - i_xb
        return d_b, d_i

    out: dict[str, np.ndarray] = {}
    d_b, d_i = deltas("S", "Sinv")
    out.update(delta_b=d_b, delta_i=d_i, sm_b=d_b * norm_b, sm_i=d_i * norm_i)
    d_b, d_i = deltas("Sinv", "S")
    out.update(delta_b_rev=d_b, sm_b_rev=d_b * norm_b, sm_i_rev=d_i * norm_i)
    if "flip" in resp:
        d_b, d_i = deltas("flip", "flip")
        out.update(delta_b_flip=d_b, sm_b_flip=d_b * norm_b, sm_i_flip=d_i * norm_i)
    if "S_sym" in resp and "Sinv_sym" in resp:  # C6's direction: zoom in vs out, one kernel, one frame
        on_xi = lambda v: relu(mean_over(resp[v].get(block, "branch_out"), xi))  # noqa: E731
        out["delta_b_sym"] = on_xi("S_sym") - on_xi("Sinv_sym")
    rng = np.random.default_rng([opts.seed, block.index])
    if measured is None:
        derange = _derangement(block.channels, rng)
    else:  # given stimuli: channel c gets another *measured* channel's stimuli
        have = np.flatnonzero(measured)
        derange = np.arange(block.channels)
        derange[have] = have[_derangement(len(have), rng)]
    d_b, _ = deltas("S", "Sinv", xi_=xi[derange])
    out.update(sm_b_mismatch=d_b * norm_b)
    return out


def _inverse_floored(den: np.ndarray, eps: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((den >= eps) & (den > 0), 1.0 / den, np.nan)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed point (channel c gets another channel's stimuli)."""
    if n < 2:
        return np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def zoom_levels(resp: Mapping) -> list[tuple[float, str]]:
    """The ``(zoom, variant)`` pairs present in ``resp``, sorted by zoom (``id`` counts as zoom 1)."""
    levels = {1.0: "id"} if "id" in resp else {}
    for name in resp:
        kind, z = parse_variant(name)
        if kind == "zoom":
            levels.setdefault(float(z), name)
    return sorted(levels.items())


def zoom_curves(block: Block, resp: Mapping, xi: np.ndarray, xo: np.ndarray) -> dict[str, np.ndarray]:
    """Responses (C, Z) of I, B and the sum to zoomed copies of each channel's own exemplars.

    Keys ``in``, ``pre``, ``post`` (on the output's stimuli ``xo``), ``pre_on_xi`` and ``zooms``;
    empty with fewer than three zoom levels in ``resp`` (``id`` counts as zoom 1).

    Example:
        >>> zoom_curves(rmap[3], responses, xi, xo)["post"].shape  # doctest: +SKIP
        (128, 5)
    """
    levels = zoom_levels(resp)
    if len(levels) < 3:
        return {}
    curves: dict[str, list] = {"in": [], "pre": [], "post": [], "pre_on_xi": []}
    for _, v in levels:
        r = resp[v]
        curves["in"].append(mean_over(r.get(block, "skip_out"), xo))
        curves["pre"].append(mean_over(r.get(block, "branch_out"), xo))
        curves["post"].append(mean_over(r.get(block, "resid_sum"), xo))
        curves["pre_on_xi"].append(mean_over(r.get(block, "branch_out"), xi))
    out = {k: np.stack(v, axis=1) for k, v in curves.items()}
    out["zooms"] = np.array([z for z, _ in levels])
    return out


def flatness(curves: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``min / max`` of each ReLU'd curve (1 = perfectly flat), NaN where the curve never rises above ``eps``.

    Example:
        >>> flatness(np.array([[1., 1., 1.], [2., 1., 0.], [0., 0., 0.]])).tolist()
        [1.0, 0.0, nan]
    """
    pos = np.maximum(curves, 0.0)
    top = pos.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(top > eps, pos.min(axis=1) / top, np.nan)
