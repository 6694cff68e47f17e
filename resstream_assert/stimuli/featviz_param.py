"""The image parameterisation and random transforms of feature visualization (lucent's recipe, batched).

The papers ran torch-lucent 0.1.8 (spec §2.1a): ``param.image(decorrelate=True)`` (Fourier
parameters with lucent's ``1/|f|`` spectrum scale, colour decorrelation, sigmoid) and random
pad / jitter / scale / rotate transforms. Here each image's random draws (its initial
spectrum and one affine transform per step) come from its own generator, seeded by
``(run seed, image seed, block, site, channel)``, never from the batch, so an image is the
same whether it is optimised alone or with others.

One step's transforms are one per-sample affine ``grid_sample``: lucent's translations
(``pad(j)`` + ``jitter(j)``, then ``jitter(j // 2)`` for ``j >= 4``), its random scale and
rotation composed, bilinear, with reflection about the border (lucent mixes reflect-pad and
zero fill); the output keeps the input size.
"""

from __future__ import annotations

import numpy as np
import torch

#: Random scale and rotation choices of the papers (both jitter regimes).
SCALES: tuple[float, ...] = (1.0, 0.975, 1.025, 0.95, 1.05)
ANGLES: tuple[int, ...] = tuple(range(-5, 6))
#: lucent's colour correlation (square root of the ImageNet colour covariance), columns normalised.
_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_CORRELATION = _SVD_SQRT / np.max(np.linalg.norm(_SVD_SQRT, axis=0))
#: The papers' jitter per ResNet18 module (name prefix, jitter; spec §2.1a, batch_process.sh); first match wins.
PAPER_JITTER: tuple[tuple[str, int], ...] = (("layer1", 0), ("layer2.0", 0), ("layer2.1", 4), ("layer3.0", 4),
                                             ("layer3.1", 16), ("layer4", 16))
#: The same table by a block's relative depth (eighths of the network), for models named otherwise.
STAGE_JITTER: tuple[int, ...] = (0, 0, 0, 4, 4, 16, 16, 16)
#: The papers' image side: their jitter table is in pixels of 224 px images.
PAPERS_SIZE = 224
FFT_SD, FFT_MAGIC = 0.01, 4.0  # lucent's initial spectrum sd and output divisor


def paper_jitter(name: str) -> int | None:
    """The papers' jitter for a module or block name (``None`` when the name is not ResNet18's).

    Example:
        >>> paper_jitter("layer2.1.bn2"), paper_jitter("layer3.1"), paper_jitter("stages.0")
        (4, 16, None)
    """
    return next((j for prefix, j in PAPER_JITTER if name == prefix or name.startswith(prefix + ".")), None)


def spectrum_shape(size: int) -> tuple[int, int, int, int]:
    """Shape of one image's Fourier parameters: (3, size, size // 2 + 1 (+1 if odd), 2 = re/im).

    Example:
        >>> spectrum_shape(32)
        (3, 32, 17, 2)
    """
    return (3, size, size // 2 + 1 + (size % 2), 2)


def draws(key: tuple[int, ...], size: int, steps: int, jitter: int, fft: bool) -> tuple[np.ndarray, np.ndarray]:
    """An image's own random numbers: initial parameters and one (2, 3) affine per step.

    ``key`` seeds a ``numpy`` generator (``SeedSequence``). Output pixel ``y`` maps to input
    pixel ``x = A (y - u2) - u1`` (centre-relative), ``A = R(-angle) / scale``: content shifted
    by ``u1`` (lucent's ``pad(j)`` + ``jitter(j)``: 0..j-1 px), scaled and rotated about the
    centre, shifted by ``u2`` (``jitter(j // 2)``); no shifts for ``j < 4``.

    Example:
        >>> init, thetas = draws((0, 0, 3, 2, 7), 32, steps=5, jitter=4, fft=True)
        >>> init.shape, thetas.shape
        ((3, 32, 17, 2), (5, 2, 3))
    """
    rng = np.random.default_rng(np.random.SeedSequence(list(key)))
    shape = spectrum_shape(size) if fft else (3, size, size)
    init = (rng.standard_normal(shape) * FFT_SD).astype(np.float32)
    scale = np.asarray(SCALES)[rng.integers(len(SCALES), size=steps)]
    angle = np.deg2rad(np.asarray(ANGLES, np.float64)[rng.integers(len(ANGLES), size=steps)])
    u1 = rng.integers(jitter, size=(steps, 2)) if jitter >= 4 else np.zeros((steps, 2))
    u2 = rng.integers(jitter // 2, size=(steps, 2)) if jitter >= 4 else np.zeros((steps, 2))
    return init, affine(scale, angle, u1, u2, size)


def affine(scale: np.ndarray, angle: np.ndarray, u1: np.ndarray, u2: np.ndarray, size: int) -> np.ndarray:
    """(steps, 2, 3) float32 ``grid_sample`` thetas for ``x = A (y - u2) - u1``, ``A = R(-angle) / scale``.

    Example:
        >>> affine(np.ones(1), np.zeros(1), np.zeros((1, 2)), np.zeros((1, 2)), 8)[0].tolist() == [[1, 0, 0], [0, 1, 0]]
        True
    """
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    a = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    b = -np.einsum("sij,sj->si", a, np.asarray(u2, np.float64)) - u1
    return np.concatenate([a, (b / (size / 2.0))[..., None]], -1).astype(np.float32)


def freq_scale(size: int, device: torch.device) -> torch.Tensor:
    """lucent's spectrum scale ``1 / max(|f|, 1 / size)`` (decay power 1), shaped to broadcast.

    Example:
        >>> freq_scale(8, torch.device("cpu")).shape
        torch.Size([1, 1, 8, 5, 1])
    """
    fy, fx_ = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[: size // 2 + 1 + (size % 2)]
    scale = 1.0 / np.maximum(np.sqrt(fx_ * fx_ + fy * fy), 1.0 / size)
    return torch.tensor(scale, dtype=torch.float32, device=device)[None, None, ..., None]


def to_rgb(p: torch.Tensor, size: int, *, fft: bool, decorrelate: bool, color: torch.Tensor,
           fscale: torch.Tensor | None) -> torch.Tensor:
    """lucent's image from its parameters: (irfft of the scaled spectrum) / 4, colour decorrelation, sigmoid.

    Example:
        >>> p = torch.zeros(2, *spectrum_shape(8))
        >>> to_rgb(p, 8, fft=True, decorrelate=True, color=torch.tensor(COLOR_CORRELATION),
        ...        fscale=freq_scale(8, torch.device("cpu"))).shape
        torch.Size([2, 3, 8, 8])
    """
    img = p
    if fft:
        assert fscale is not None, "fft=True needs fscale (freq_scale)"
        img = torch.fft.irfftn(torch.view_as_complex(fscale * p), s=(size, size), norm="ortho") / FFT_MAGIC
    if decorrelate:
        img = torch.einsum("dc,nchw->ndhw", color, img)
    return torch.sigmoid(img)
