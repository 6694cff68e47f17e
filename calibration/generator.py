"""Synthetic residual-stream responses and measures with known answers (numpy only), for calibration and power.

**Responses** (:func:`synthetic_responses`) go through the project's own ``measures.measure_all``
and claims, exactly as captured responses do. The layout mimics ResNet18: 8 blocks (1.0, 1.1,
2.0*, 2.1, 3.0*, 3.1, 4.0*, 4.1; * = projection shortcut), each with the same number of channels,
block 1.0 not analysed by the claims (as in the papers). Per image ``n`` and channel ``c``::

    I = skip_out    = X (projection blocks) or ReLU(X + 0.5) (identity blocks)
    B = branch_out  = s_c (k_c I + sqrt(1 - k_c^2) Z)
    resid_sum = I + B,  resid_post = ReLU(resid_sum)

where the latents X and Z have unit variance and are sparse: each channel is driven by a share
of the images (``sparsity``, drawn per channel), as a selective feature is, so that its top-9
exemplars are noisy on a small probe set and settle on a large one.

``s_c`` (log-normal) places channel ``c`` on the skip / mix / overwrite spectrum (the mix ratio M
falls as ``s_c`` grows) and ``k_c`` is its input-branch correlation (``kappa``). A transformed
image (``S``, ``Sinv``, ``flip``, ``zoom{z}``) gives latents ``r_v * latent + sqrt(1 - r_v^2) * fresh``
(``r_v = 1 - log2(z) / 2`` for S, Sinv and the flip, 0.5; ``1 - log2(z) / 4`` along the zoom axis;
with ``regress=False`` the latent keeps its value and gains noise of the same correlation) fed
through the same channel: with nothing planted, every transform is exchangeable with every
other one, so no claim about scale has anything to find.

Planted effects (:class:`Effects`, all off by default):

- ``inhibition`` (C4): the input-branch correlation ``k_c`` falls by ``inhibition`` per SD of
  ``log s_c`` (clipped to +-0.95), so overwrite channels are inhibited by their input's feature,
  in every block or in ``inhibition_blocks`` only (heterogeneous block effects);

- ``gain_rho`` (C3): the branch gain is a Gaussian copula of ``log s_c``; ``gain_rho`` is the
  population Spearman correlation between the gain and M (negative = the claim's direction).
- ``scale_frac`` / ``scale_size`` (C5, C6, C8, C9): on a random fraction of the channels the
  branch's response to ``S`` images gains ``scale_size * s_c * I`` of the original image, centred
  over images (the block sees a zoomed-in copy of the input's feature), the input's response to
  ``Sinv`` gains ``scale_size * B / s_c`` (centred), and along the zoom axis In falls while Pre
  rises by the same amount, ``scale_size * log2(z) * I`` (centred); on the symmetric pair the
  branch's response to ``S_sym`` gains ``scale_size * s_c * I / 2`` (centred), ``Sinv_sym`` nothing.
- ``zoom_bias`` (C6's channel-unspecific null): every branch channel's response to the papers'
  blurry zoom-ins (``S``, ``zoom{z}``) rises by ``zoom_bias * s_c * log2(z)`` on every image, and
  to both sides of the symmetric pair alike: a preference for blur, shared by all channels, that
  the sign test and the papers' S-vs-S^-1 comparison read as equivariance.

**Measures** (:func:`spectrum_context`) builds ``BlockMeasures`` whose skip / mix / overwrite
categories are drawn with given probabilities, for C1's least favourable null (a category at
exactly 5%) and its power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from resstream_assert.capture.responses import Responses, site_key
from resstream_assert.claims.base import ZOOM_VARIANTS, ClaimContext, ClaimOptions
from resstream_assert.discovery.residual_map import SITES, Block, ResidualMap
from resstream_assert.measures import BlockMeasures

#: ResNet18's block names and shortcut kinds (True = projection).
LAYOUT = (("layer1.0", False), ("layer1.1", False), ("layer2.0", True), ("layer2.1", False),
          ("layer3.0", True), ("layer3.1", False), ("layer4.0", True), ("layer4.1", False))
SPATIAL = ((8, 8), (8, 8), (4, 4), (4, 4), (2, 2), (2, 2), (1, 1), (1, 1))
SCALE_VARIANTS = ("id", "S", "Sinv", "flip")
SYM_VARIANTS = ("S_sym", "Sinv_sym")  # C6's symmetric zoom pair (appended last: earlier draws stay the same)
ALL_VARIANTS = SCALE_VARIANTS + ZOOM_VARIANTS + SYM_VARIANTS


@dataclass(frozen=True)
class Effects:
    """What is planted in synthetic responses; the defaults plant nothing (the null).

    Example:
        >>> Effects(gain_rho=-0.3).gain_rho
        -0.3
    """

    gain_rho: float = 0.0
    scale_frac: float = 0.0
    scale_size: float = 1.0
    kappa: tuple[float, float] = (-0.3, 0.3)  # range of the per-channel input-branch correlation
    log_scale_sd: float = 0.8  # spread of log s_c (the spectrum's width)
    regress: bool = True  # transformed latents shrink toward 0 (True) or only gain noise (False)
    sparsity: tuple[float, float] | None = (0.05, 0.5)  # range of each channel's share of images that drive it
    zoom_bias: float = 0.0  # every branch channel prefers the papers' blurry zoom-in (S, zoom{z}), on any image
    inhibition: float = 0.0  # C4: k_c falls by this much per SD of log s_c (overwrite channels more inhibited)
    inhibition_blocks: tuple[int, ...] | None = None  # blocks that get it (None: all)


def _zoom(variant: str) -> float:
    if variant in ("S", "Sinv"):
        return 2.0
    if variant in SYM_VARIANTS:
        return math.sqrt(2.0)
    if variant.startswith("zoom"):
        return float(variant[4:])
    return 2.0 if variant == "flip" else 1.0


def _correlated(x: np.ndarray, r: float, fresh: np.ndarray, regress: bool = True) -> np.ndarray:
    """A latent correlated ``r`` with ``x``: shrunk toward 0 plus fresh noise, or ``x`` plus noise alone."""
    fresh = math.sqrt(max(0.0, 1.0 - r * r)) * fresh
    return r * x + fresh if regress else x + fresh / r


def _gain(log_s: np.ndarray, effects: Effects, rng: np.random.Generator) -> np.ndarray:
    """|gamma| per channel: Spearman(M, gain) = gain_rho in the population (M falls with s)."""
    r = 2.0 * math.sin(math.pi * -effects.gain_rho / 6.0)  # Gaussian copula: rho_S = (6/pi) asin(r/2)
    z = (log_s - log_s.mean()) / (log_s.std() + 1e-12)
    return np.exp(0.3 * _correlated(z, r, rng.standard_normal(z.shape)))


def synthetic_block(index: int, n_images: int, channels: int, rng: np.random.Generator,
                    effects: Effects = Effects(), variants=("id",)) -> tuple[Block, dict[str, dict[str, np.ndarray]]]:
    """One block: its :class:`Block` (with branch gains) and, per variant, its site arrays ``(N, C)``.

    Example:
        >>> block, sites = synthetic_block(1, 64, 16, np.random.default_rng(0))
        >>> block.name, sites["id"]["branch_out"].shape
        ('layer1.1', (64, 16))
    """
    name, projection = LAYOUT[index % len(LAYOUT)]
    log_s = effects.log_scale_sd * rng.standard_normal(channels)
    s = np.exp(log_s)
    k = rng.uniform(*effects.kappa, size=channels)
    if effects.inhibition and (effects.inhibition_blocks is None or index in effects.inhibition_blocks):
        k = np.clip(k - effects.inhibition * (log_s - log_s.mean()) / (log_s.std() + 1e-12), -0.95, 0.95)
    planted = rng.random(channels) < effects.scale_frac
    share = rng.uniform(*effects.sparsity, size=channels) if effects.sparsity else None

    def draw() -> np.ndarray:  # unit variance; sparse: a channel is driven by a share of the images only
        g = rng.standard_normal((n_images, channels))
        return g if share is None else g * (rng.random(g.shape) < share) / np.sqrt(share)

    x, z = draw(), draw()

    def skip(latent):
        return latent if projection else np.maximum(latent + 0.5, 0.0)

    i0 = skip(x)
    b0 = s * (k * i0 + np.sqrt(1 - k * k) * z)
    out = {}
    for v in variants:
        r = 1.0 - math.log2(_zoom(v)) / (4.0 if v.startswith("zoom") else 2.0)
        xi, zi = (x, z) if v == "id" else (_correlated(x, r, draw(), effects.regress),
                                           _correlated(z, r, draw(), effects.regress))
        i = skip(xi)
        b = s * (k * i + np.sqrt(1 - k * k) * zi)
        if v != "id" and effects.scale_frac > 0:
            # centred over images: a planted channel gains on its own exemplars, not on every image
            size, own_i, own_b = effects.scale_size * planted, i0 - i0.mean(0), (b0 - b0.mean(0)) / s
            if v == "S":
                b = b + size * s * own_i
            elif v == "Sinv":
                i = i + size * own_b
            elif v == "S_sym":  # zoom in by sqrt(2): half the log-zoom of S
                b = b + 0.5 * size * s * own_i
            elif v.startswith("zoom"):
                shift = size * math.log2(_zoom(v)) * own_i
                i, b = i - shift, b + shift
        if effects.zoom_bias and (v == "S" or v.startswith("zoom") or v in SYM_VARIANTS):
            # blur, not scale: the papers' zoom-ins blur by log2(z); the symmetric pair blurs both sides alike
            b = b + effects.zoom_bias * s * math.log2(_zoom(v))
        total = i + b
        out[v] = {"resid_pre": i, "skip_out": i, "branch_out": b, "resid_sum": total,
                  "resid_post": np.maximum(total, 0.0)}
    block = Block(index=index, name=name, sites={site: f"{name}.{site}" for site in SITES}, channels=channels,
                  spatial=SPATIAL[index % len(SPATIAL)], projection=projection, gain_kind="bn",
                  gain_source=f"{name}.bn2", conv_source=f"{name}.conv2", branch_gain=_gain(log_s, effects, rng),
                  conv_magnitude=rng.uniform(0.05, 0.2, size=channels))
    return block, out


def synthetic_responses(seed: int, *, n_images: int = 512, channels: int = 64, effects: Effects = Effects(),
                        variants=("id",), n_blocks: int = 8) -> tuple[ResidualMap, dict[str, Responses]]:
    """A ResNet18-like :class:`ResidualMap` and its :class:`Responses` per variant, seeded.

    Example:
        >>> rmap, resp = synthetic_responses(0, n_images=64, channels=8)
        >>> len(rmap), resp["id"].get(3, "skip_out").shape
        (8, (64, 8))
    """
    rng = np.random.default_rng(seed)
    blocks, tables = [], {v: {} for v in variants}
    for index in range(n_blocks):
        block, sites = synthetic_block(index, n_images, channels, rng, effects, variants)
        blocks.append(block)
        for v in variants:
            for site, arr in sites[v].items():
                tables[v][site_key(index, site)] = arr.astype(np.float32)
    resp = {v: Responses(v, t, dict(t), None) for v, t in tables.items()}
    return ResidualMap("synthetic", 32, tuple(blocks)), resp


def spectrum_block(index: int, channels: int, probs: tuple[float, float, float],
                   rng: np.random.Generator) -> BlockMeasures:
    """BlockMeasures whose channels are skip / mix / overwrite with probabilities ``probs`` (for C1).

    Example:
        >>> bm = spectrum_block(1, 100, (0.05, 0.475, 0.475), np.random.default_rng(0))
        >>> bm.category().shape
        (100,)
    """
    cat = rng.choice(3, size=channels, p=np.asarray(probs) / np.sum(probs))
    m = np.array([3.0, 1.0, 0.3])[cat] * np.exp(0.05 * rng.standard_normal(channels))
    nan = np.full(channels, np.nan)
    return BlockMeasures(block=LAYOUT[index % len(LAYOUT)][0], index=index, channels=channels,
                         responses_to_exemplars={}, m_p1=m, m_p2=m.copy(), m_p1_coded=m.copy(), m_p2_coded=m.copy(),
                         branch_gain=None, conv_magnitude=None, gain_kind="none", b_at_xi=nan, rho_tuning=nan,
                         rho_tuning_all=nan, contribution_share=nan)


def spectrum_context(seed: int, probs: list[tuple[float, float, float]], channels: int = 64,
                     options: ClaimOptions = ClaimOptions()) -> ClaimContext:
    """A claim context of ``len(probs) + 1`` spectrum blocks (the first is not analysed), seeded.

    Example:
        >>> ctx = spectrum_context(0, [(0.05, 0.475, 0.475)] * 7)
        >>> len(ctx.analysed())
        7
    """
    rng = np.random.default_rng(seed)
    ms = tuple(spectrum_block(i, channels, p, rng) for i, p in enumerate([(1 / 3, 1 / 3, 1 / 3)] + list(probs)))
    blocks = tuple(Block(i, bm.block, {s: s for s in SITES}, channels, spatial=SPATIAL[i % len(SPATIAL)])
                   for i, bm in enumerate(ms))
    return ClaimContext(model="synthetic", backend="torch", rmap=ResidualMap("synthetic", 32, blocks), measures=ms,
                        responses={}, options=options, seed=seed)
