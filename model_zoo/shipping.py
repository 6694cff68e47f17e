"""Shipping a trained zoo model: predictions as the cards measure them, the fp16 weights file (checked against
fp32), and the card files. Shared by the synthetic-shape training (``train.py``) and the natural-image one
(``natural.py``), which both write into ``resstream_assert/zoo/``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from resstream_assert import zoo
from resstream_assert.stimuli.variants import apply_variant

# fp16 weights ship only when their softmax stays this close to fp32's on the test images.
FP16_MAX_SOFTMAX_DIFF = 1e-2
FP16_MIN_ARGMAX_AGREEMENT = 0.999


def _normalize(x: torch.Tensor, mean=zoo.IMAGENET_MEAN, std=zoo.IMAGENET_STD) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def predict(model: torch.nn.Module, images_u8: torch.Tensor, variant: str = "id",
            batch_size: int = 250, mean=zoo.IMAGENET_MEAN, std=zoo.IMAGENET_STD) -> torch.Tensor:
    """Logits of a model on uint8 images ``(N, 3, H, W)`` under a stimulus variant.

    Example:
        >>> predict(zoo.get("cifar-resnet20-synth32").build().eval(),
        ...         torch.zeros(4, 3, 32, 32, dtype=torch.uint8)).shape
        torch.Size([4, 10])
    """
    model.eval()
    out = []
    with torch.no_grad():  # without it every batch's autograd graph is kept: 24 GB for a ResNet-20 at 10,000 images
        for i in range(0, len(images_u8), batch_size):
            x = apply_variant(images_u8[i:i + batch_size].float() / 255, variant)
            out.append(model(_normalize(x, mean, std).contiguous(memory_format=torch.channels_last)))
    return torch.cat(out)


def _fp16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    keep32 = ("running_mean", "running_var")
    return {k: (v.half() if v.is_floating_point() and not k.endswith(keep32) else v).contiguous()
            for k, v in model.state_dict().items()}


def _fp16_check(entry, model: torch.nn.Module, test_x: torch.Tensor) -> dict:
    norm = dict(mean=entry.mean, std=entry.std)
    ref = F.softmax(predict(model, test_x, **norm), 1)
    m16 = entry.build()
    m16.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in _fp16_state(model).items()})
    m16 = m16.to(memory_format=torch.channels_last)
    got = F.softmax(predict(m16, test_x, **norm), 1)
    diff = float((ref - got).abs().max())
    agree = float((ref.argmax(1) == got.argmax(1)).float().mean())
    return {"max_softmax_abs_diff": diff, "argmax_agreement": agree,
            "tolerance": {"max_softmax_abs_diff": FP16_MAX_SOFTMAX_DIFF,
                          "min_argmax_agreement": FP16_MIN_ARGMAX_AGREEMENT},
            "passed": diff <= FP16_MAX_SOFTMAX_DIFF and agree >= FP16_MIN_ARGMAX_AGREEMENT,
            "n_images": len(test_x)}


def _save_weights(entry, model: torch.nn.Module, te_x: torch.Tensor, out_dir: Path,
                  seed: int) -> tuple[dict, Path]:
    import safetensors.torch

    check = _fp16_check(entry, model, te_x)
    state = _fp16_state(model) if check["passed"] else {k: v.contiguous() for k, v in model.state_dict().items()}
    (out_dir / "weights").mkdir(parents=True, exist_ok=True)
    wpath = out_dir / "weights" / f"{entry.name}.safetensors"
    safetensors.torch.save_file(state, str(wpath), metadata={"model": entry.name, "seed": str(seed)})
    wpath.chmod(0o644)  # safetensors writes 0600; shipped package data must be world-readable
    return check, wpath


def _weights_fields(wpath: Path, check: dict) -> dict:
    return {"weights_file": wpath.name, "sha256": zoo._sha256(wpath), "weights_bytes": wpath.stat().st_size,
            "weights_dtype": "float16 (BN running stats float32)" if check["passed"] else "float32",
            "fp16_check": check}


def _write_card(card: dict, out_dir: Path, markdown) -> None:
    (out_dir / "cards").mkdir(parents=True, exist_ok=True)
    (out_dir / "cards" / f"{card['name']}.json").write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / "cards" / f"{card['name']}.md").write_text(markdown(card))
