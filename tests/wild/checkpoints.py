"""Weights files as public repositories publish them, and the broken files people meet.

Every generator has the signature ``gen(model, directory) -> (path, expect)``: it writes one
file (or directory) under ``directory`` from ``model``'s weights and returns its path and a
dict saying what a correct loader must do with it:

``{"ok": True, ...}``
    the file loads; ``state`` holds the tensors the loaded model must then have (after the
    loader unwraps ``wrapper`` and strips ``prefix``), ``num_classes`` the classifier size it
    must infer, ``trust_pickle`` whether loading needs the user's explicit trust.
``{"ok": False, ...}``
    the file is refused with ``error`` (an exception class name from
    ``resstream_assert.errors``) whose message matches the regex ``match`` (it names the
    problem) and, where given, does not match ``not_match`` (a misdiagnosis).

Both kinds carry ``factory`` (the ``architectures`` factory the file is loaded into),
``problem`` / ``source`` (a short description and where the format comes from).

``IMAGES`` does the same for probe images: ``gen(directory) -> (path, expect)`` with
``{"ok": True, "rgb": (r, g, b), "tol": t}`` (every pixel of the loaded, resized image must be
within ``tol`` of ``rgb``) or ``{"ok": False, "error": "ProbeError", "match": ...}``.

Writers use only torch, safetensors, numpy and PIL; nothing is downloaded.
"""

from __future__ import annotations

import collections
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import architectures

#: The factory (in ``architectures``) every checkpoint below is written for, unless noted.
ARCH = "resnet20"
#: A different architecture, for the "wrong architecture" file.
OTHER_ARCH = "ResNet18"


# --- the model whose weights are saved -----------------------------------------------------

def trained_like(factory: str = ARCH, num_classes: int = 10, seed: int = 1) -> nn.Module:
    """A model whose every tensor differs from the factory's seed-0 init (as a trained one would).

    Random conv/linear weights (seed ``seed``), random BN affine parameters and running
    statistics, and ``num_batches_tracked`` = 390 (one CIFAR epoch at batch size 128).
    """
    torch.manual_seed(seed)
    model = architectures.FACTORIES[factory](num_classes=num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(390)
            elif isinstance(m, nn.Linear):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def state_of(model: nn.Module) -> "collections.OrderedDict[str, torch.Tensor]":
    """A detached copy of ``model.state_dict()`` (so later edits to the model do not leak in)."""
    return collections.OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())


def _ok(state, *, wrapper=None, prefix=None, num_classes=10, trust_pickle=False, factory=ARCH, source=""):
    return {"ok": True, "factory": factory, "wrapper": wrapper, "prefix": prefix, "state": dict(state),
            "num_classes": num_classes, "trust_pickle": trust_pickle, "problem": None, "source": source}


def _refuse(problem, match, *, not_match=None, error="CheckpointError", factory=ARCH, source=""):
    return {"ok": False, "factory": factory, "error": error, "problem": problem, "match": match,
            "not_match": not_match, "source": source}


def _sgd_state(model: nn.Module) -> dict:
    """An SGD (momentum) optimizer state dict after one step, as training scripts save it."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p in model.parameters():
        p.grad = None
    return opt.state_dict()


def _prefixed(state, prefix):
    return collections.OrderedDict((prefix + k, v) for k, v in state.items())


# --- loadable formats ----------------------------------------------------------------------

def plain_pth(model, directory):
    """``torch.save(model.state_dict(), 'resnet20.pth')``."""
    sd = state_of(model)
    path = Path(directory) / "resnet20.pth"
    torch.save(sd, path)
    return path, _ok(sd, source="torch.save(model.state_dict())")


def plain_pt(model, directory):
    """The same under ``.pt``, the other common suffix."""
    sd = state_of(model)
    path = Path(directory) / "model_best.pt"
    torch.save(sd, path)
    return path, _ok(sd, source="torch.save(model.state_dict()), .pt")


def hf_pytorch_model_bin(model, directory):
    """A plain state dict named ``pytorch_model.bin`` (Hugging Face Hub convention)."""
    sd = state_of(model)
    path = Path(directory) / "pytorch_model.bin"
    torch.save(sd, path)
    return path, _ok(sd, source="Hugging Face pytorch_model.bin")


def legacy_serialization(model, directory):
    """The pre-1.6 (non-zip) torch.save format, still common for older published checkpoints."""
    sd = state_of(model)
    path = Path(directory) / "resnet20-12fca82f.th"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    return path, _ok(sd, source="torch < 1.6 torch.save (legacy tar/pickle format)")


def legacy_no_num_batches_tracked(model, directory):
    """A state dict without ``*.num_batches_tracked`` buffers, as torch < 0.4.1 saved BatchNorm.

    ``nn.Module.load_state_dict(strict=True)`` accepts it (BatchNorm fills the counter in).
    """
    sd = state_of(model)
    legacy = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(legacy) < len(sd)
    path = Path(directory) / "resnet20_legacy.pth"
    torch.save(legacy, path)
    return path, _ok(legacy, source="torch < 0.4.1 state dict (no num_batches_tracked)")


def half_precision(model, directory):
    """fp16 tensors (``model.half().state_dict()``), as many checkpoints are shipped to save space."""
    sd = collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in state_of(model).items())
    path = Path(directory) / "resnet20_fp16.pth"
    torch.save(sd, path)
    return path, _ok(sd, source="model.half().state_dict()")


def imagenet_example(model, directory):
    """pytorch/examples imagenet ``save_checkpoint``: DataParallel keys, ``best_acc1`` a tensor."""
    sd = state_of(model)
    ckpt = {"epoch": 3, "arch": "resnet20", "state_dict": _prefixed(sd, "module."),
            "best_acc1": torch.tensor(71.25), "optimizer": _sgd_state(trained_like()),
            "scheduler": {"step_size": 30, "gamma": 0.1, "base_lrs": [0.1], "last_epoch": 3,
                          "_step_count": 4, "verbose": False, "_get_lr_called_within_step": False,
                          "_last_lr": [0.1]}}
    path = Path(directory) / "checkpoint.pth.tar"
    torch.save(ckpt, path)
    return path, _ok(sd, wrapper="state_dict", prefix="module.",
                     source="pytorch/examples imagenet main.py save_checkpoint")


def wrapped_model(model, directory):
    """``{"model": sd, ...}`` (torchvision references, DeiT, detectron-like trainers)."""
    sd = state_of(model)
    path = Path(directory) / "model_3.pth"
    torch.save({"model": sd, "optimizer": _sgd_state(trained_like()), "epoch": 3,
                "args": {"lr": 0.1, "arch": "resnet20"}}, path)
    return path, _ok(sd, wrapper="model", source="torchvision references/classification train.py")


def wrapped_model_state_dict(model, directory):
    """PyTorch tutorial 'saving a general checkpoint': ``model_state_dict`` + ``optimizer_state_dict``."""
    sd = state_of(model)
    path = Path(directory) / "ckpt_epoch3.pt"
    torch.save({"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": _sgd_state(trained_like()),
                "loss": 0.4213}, path)
    return path, _ok(sd, wrapper="model_state_dict", source="pytorch.org tutorial saving_loading_models")


def kuangliu_net(model, directory):
    """kuangliu/pytorch-cifar ``{'net': net.state_dict(), 'acc': acc, 'epoch': epoch}``, DataParallel keys."""
    sd = state_of(model)
    path = Path(directory) / "ckpt.pth"
    torch.save({"net": _prefixed(sd, "module."), "acc": 93.02, "epoch": 3}, path)
    return path, _ok(sd, wrapper="net", prefix="module.", source="kuangliu/pytorch-cifar main.py")


def ema_only(model, directory):
    """``{"ema": sd, "epoch": 3}``: an exponential-moving-average copy saved on its own."""
    sd = state_of(model)
    path = Path(directory) / "ema.pth"
    torch.save({"ema": sd, "epoch": 3, "updates": 1170}, path)
    return path, _ok(sd, wrapper="ema", source="EMA-only checkpoint")


def model_ema_only(model, directory):
    """``{"model_ema": sd}``: the EMA weights extracted from a timm/DeiT-style run."""
    sd = state_of(model)
    path = Path(directory) / "model_ema.pth"
    torch.save({"model_ema": sd}, path)
    return path, _ok(sd, wrapper="model_ema", source="timm ModelEmaV2 / DeiT model_ema")


def _ema_of(model):
    ema = trained_like(seed=2)
    with torch.no_grad():
        for (_, e), (_, m) in zip(ema.state_dict().items(), model.state_dict().items()):
            if e.is_floating_point():
                e.copy_(0.9 * m + 0.1 * e)
            else:
                e.copy_(m)
    return state_of(ema)


def timm_train_checkpoint(model, directory):
    """timm ``CheckpointSaver``: ``state_dict`` and ``state_dict_ema`` (different tensors) side by side.

    A loader must take ``state_dict`` (the trained weights; timm's validate.py does unless
    ``--use-ema``), not silently the EMA copy.
    """
    sd = state_of(model)
    path = Path(directory) / "model_best.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet20", "state_dict": sd, "optimizer": _sgd_state(trained_like()),
                "version": 2, "metric": 71.25, "state_dict_ema": _ema_of(model)}, path)
    return path, _ok(sd, wrapper="state_dict", source="timm train.py CheckpointSaver (with --model-ema)")


def deit_model_and_model_ema(model, directory):
    """DeiT/ConvNeXt ``{"model": sd, "model_ema": ema_sd, ...}``: the loader must take ``model``."""
    sd = state_of(model)
    path = Path(directory) / "checkpoint-best.pth"
    torch.save({"model": sd, "model_ema": _ema_of(model), "epoch": 3, "scaler": {"scale": 65536.0}}, path)
    return path, _ok(sd, wrapper="model", source="facebookresearch/deit, ConvNeXt main.py")


def dataparallel_prefix(model, directory):
    """``torch.save(nn.DataParallel(model).state_dict())``: every key starts with ``module.``."""
    sd = state_of(model)
    path = Path(directory) / "resnet20_dp.pth"
    torch.save(nn.DataParallel(model).state_dict(), path)
    return path, _ok(sd, prefix="module.", source="nn.DataParallel / DistributedDataParallel")


def compiled_prefix(model, directory):
    """``torch.save(torch.compile(model).state_dict())``: every key starts with ``_orig_mod.``."""
    sd = state_of(model)
    compiled = torch.compile(model)  # wraps only; nothing is compiled until it is called
    saved = compiled.state_dict()
    assert all(k.startswith("_orig_mod.") for k in saved)
    path = Path(directory) / "resnet20_compiled.pth"
    torch.save(saved, path)
    return path, _ok(sd, prefix="_orig_mod.", source="torch.compile(model).state_dict()")


def lightning_ckpt(model, directory):
    """A PyTorch Lightning ``.ckpt``: ``state_dict`` keys ``model.<name>`` (the LightningModule's attribute)."""
    sd = state_of(model)
    ckpt = {"epoch": 3, "global_step": 1560, "pytorch-lightning_version": "2.4.0",
            "state_dict": _prefixed(sd, "model."), "loops": {},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}": {"best_model_score": torch.tensor(0.71)}},
            "optimizer_states": [_sgd_state(trained_like())], "lr_schedulers": [],
            "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.1, "arch": "resnet20"}}
    path = Path(directory) / "epoch=3-step=1560.ckpt"
    torch.save(ckpt, path)
    return path, _ok(sd, wrapper="state_dict", prefix="model.", source="PyTorch Lightning ModelCheckpoint")


def safetensors_file(model, directory):
    """``safetensors.torch.save_file(state_dict, 'model.safetensors')``."""
    from safetensors.torch import save_file

    sd = state_of(model)
    path = Path(directory) / "model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
    return path, _ok(sd, source="safetensors save_file")


def device_saved(model, directory):
    """A state dict whose storages are recorded as ``cuda:0`` (saved from a GPU).

    Written on CPU by registering a storage tagger that labels every storage ``cuda:0``, which
    is exactly what ``torch.save`` records for CUDA tensors; ``torch.load`` without a
    ``map_location`` fails on a machine without CUDA.
    """
    sd = state_of(model)
    path = Path(directory) / "resnet20_cuda.pth"
    from torch import serialization

    entry = (-1000, lambda storage: "cuda:0", lambda storage, location: None)
    serialization._package_registry.insert(0, entry)
    try:
        torch.save(sd, path)
    finally:
        serialization._package_registry.remove(entry)
    return path, _ok(sd, source="torch.save of CUDA tensors")


def other_num_classes(model, directory):
    """A state dict with a 7-way classifier: the loader must build the model with ``num_classes=7``."""
    sd = state_of(trained_like(num_classes=7, seed=3))
    path = Path(directory) / "resnet20_7cls.pth"
    torch.save(sd, path)
    return path, _ok(sd, num_classes=7, source="fine-tuned on a 7-class dataset")


def whole_model_pickle_trusted(model, directory):
    """``torch.save(model)`` (a pickled nn.Module), loaded with ``trust_pickle=True``.

    Written from the kuangliu ResNet18: akamaster's option-A ResNet-20 cannot be pickled whole
    (its LambdaLayer holds a local lambda), which is why that repository publishes state dicts.
    """
    model = trained_like(OTHER_ARCH)
    path = Path(directory) / "resnet18_full.pth"
    torch.save(model, path)
    return path, _ok(state_of(model), trust_pickle=True, factory=OTHER_ARCH, source="torch.save(model)")


# --- files a correct loader must refuse (or, where noted, read by content) ----------------------

def whole_model_pickle(model, directory):
    """``torch.save(model)`` without trust: refused, and the message says why and what to do."""
    path = Path(directory) / "resnet18_full.pth"
    torch.save(trained_like(OTHER_ARCH), path)
    return path, _refuse("pickled whole model (unpickling can run code)", r"(?i)pickle.*trust",
                         factory=OTHER_ARCH, source="torch.save(model)")


def empty_file(model, directory):
    """A 0-byte ``.pth`` (an interrupted download or copy)."""
    path = Path(directory) / "resnet20.pth"
    path.write_bytes(b"")
    return path, _refuse("empty file (0 bytes)", r"(?i)\bempty\b|\b0 bytes\b|zero bytes",
                         not_match=r"(?i)whole model")


def text_file(model, directory):
    """A text file named ``.pth`` (a README or notes saved under the weights' name)."""
    path = Path(directory) / "resnet20.pth"
    path.write_text("ResNet-20 trained on CIFAR-10, 91.7% top-1.\nDownload the weights from the release page.\n")
    return path, _refuse("a text file, not a checkpoint", r"(?i)\btext\b|not a (py)?torch|not a checkpoint",
                         not_match=r"(?i)whole model|trust")


def git_lfs_pointer(model, directory):
    """A Git LFS pointer saved as ``.pth`` (the repository was cloned without ``git lfs pull``)."""
    path = Path(directory) / "resnet20.pth"
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:4f5e9d2b1c0a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5\n"
                    "size 1093861\n")
    return path, _refuse("a Git LFS pointer, not the weights", r"(?i)lfs",
                         not_match=r"(?i)whole model|trust", source="git clone without git-lfs")


def html_page(model, directory):
    """An HTML page saved as ``.pth`` (a download link that returned a login or quota page)."""
    path = Path(directory) / "resnet20.pth"
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
                    "<body>Google Drive can't scan this file for viruses.</body></html>\n")
    return path, _refuse("an HTML page, not the weights", r"(?i)html|\btext\b",
                         not_match=r"(?i)whole model|trust", source="wget of a Drive share link")


def truncated_pth(model, directory):
    """The first half of a valid zip-format ``.pth`` (an interrupted download)."""
    path = Path(directory) / "resnet20.pth"
    torch.save(state_of(model), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, _refuse("truncated file", r"(?i)truncated|corrupt|incomplete")


def pickled_list(model, directory):
    """``torch.save([tensor, ...])``: readable with weights_only, but a list, not a state dict."""
    path = Path(directory) / "resnet20.pth"
    torch.save([v for v in state_of(model).values()], path)
    return path, _refuse("a list of tensors, not a state dict", r"(?i)\blist\b",
                         not_match=r"(?i)whole model")


def junk_bytes(model, directory):
    """4 KiB of seeded random bytes under ``.pth``."""
    path = Path(directory) / "resnet20.pth"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path, _refuse("not a PyTorch or safetensors file",
                         r"(?i)not a (py)?torch|unrecogni[sz]ed|corrupt|not a checkpoint|unknown format",
                         not_match=r"(?i)whole model|trust")


def safetensors_named_pth(model, directory):
    """A safetensors file saved under ``.pth``: a loader must read it by content, and load it."""
    from safetensors.torch import save_file

    sd = state_of(model)
    path = Path(directory) / "resnet20.pth"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path, _ok(sd, source="safetensors written under a .pth name")


def directory_path(model, directory):
    """A directory (a Hugging Face snapshot folder) given as the weights path."""
    from safetensors.torch import save_file

    path = Path(directory) / "resnet20-cifar10"
    path.mkdir()
    save_file({k: v.contiguous() for k, v in state_of(model).items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"architecture": "resnet20", "num_classes": 10}))
    return path, _refuse("a directory, not a file", r"(?i)directory|folder",
                         not_match=r"(?i)does not exist")


def nan_weight(model, directory):
    """A state dict with one NaN in a conv weight (a diverged run): refused, naming the tensor."""
    sd = state_of(model)
    sd["layer2.1.conv1.weight"][0, 0, 1, 1] = float("nan")
    path = Path(directory) / "resnet20_diverged.pth"
    torch.save(sd, path)
    return path, _refuse("a NaN weight", r"(?i)nan.*layer2\.1\.conv1\.weight|layer2\.1\.conv1\.weight.*nan")


def wrong_architecture(model, directory):
    """Weights of the kuangliu ResNet18 loaded into ResNet-20: refused with the key differences."""
    path = Path(directory) / "resnet18.pth"
    torch.save(state_of(trained_like(OTHER_ARCH)), path)
    return path, _refuse("weights of another architecture", r"(?i)does not fit.*(missing|unexpected)")


CHECKPOINTS = {f.__name__: f for f in (
    plain_pth, plain_pt, hf_pytorch_model_bin, legacy_serialization, legacy_no_num_batches_tracked,
    half_precision, imagenet_example, wrapped_model, wrapped_model_state_dict, kuangliu_net, ema_only,
    model_ema_only, timm_train_checkpoint, deit_model_and_model_ema, dataparallel_prefix, compiled_prefix,
    lightning_ckpt, safetensors_file, device_saved, other_num_classes, whole_model_pickle_trusted,
    whole_model_pickle, empty_file, text_file, git_lfs_pointer, html_page, truncated_pth, pickled_list,
    junk_bytes, safetensors_named_pth, directory_path, nan_weight, wrong_architecture)}


# --- probe images ------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16_rgb(path, rgb16: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint16 array as a 48-bit RGB PNG (PIL cannot write these)."""
    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[i].astype(">u2").tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                           + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def png16_gray(directory):
    """A 16-bit grayscale PNG (mode I;16), mid-grey 0x8080: the probe must see ~128, not 255."""
    from PIL import Image

    path = Path(directory) / "gray16.png"
    Image.fromarray(np.full((40, 48), 0x8080, np.uint16)).save(path)
    return path, {"ok": True, "rgb": (128, 128, 128), "tol": 2, "source": "16-bit PNG (microscopy, scans)"}


def png16_rgb(directory):
    """A 48-bit RGB PNG (16 bits per channel): 8-bit values are the high bytes."""
    path = Path(directory) / "rgb16.png"
    write_png16_rgb(path, np.broadcast_to(np.array([0xC8C8, 0x1E1E, 0x6464], np.uint16), (40, 48, 3)).copy())
    return path, {"ok": True, "rgb": (200, 30, 100), "tol": 2, "source": "16-bit RGB PNG export"}


def palette_png(directory):
    """A palette (mode P) PNG."""
    from PIL import Image

    path = Path(directory) / "palette.png"
    im = Image.new("P", (36, 36))
    im.putpalette([0, 0, 0, 200, 30, 60] + [0] * (3 * 254))
    im.paste(1, (0, 0, 36, 36))
    im.save(path)
    return path, {"ok": True, "rgb": (200, 30, 60), "tol": 0, "source": "palette PNG (GIF-like)"}


def grayscale_png(directory):
    """An 8-bit grayscale (mode L) PNG: replicated to 3 channels."""
    from PIL import Image

    path = Path(directory) / "gray.png"
    Image.new("L", (36, 36), 90).save(path)
    return path, {"ok": True, "rgb": (90, 90, 90), "tol": 0, "source": "grayscale PNG"}


def rgba_png(directory):
    """An opaque RGBA PNG: alpha dropped, colour kept (torchvision's pil_loader convention)."""
    from PIL import Image

    path = Path(directory) / "rgba.png"
    Image.new("RGBA", (36, 36), (10, 200, 120, 255)).save(path)
    return path, {"ok": True, "rgb": (10, 200, 120), "tol": 0, "source": "RGBA PNG (screenshots)"}


def cmyk_jpeg(directory):
    """A CMYK JPEG (print workflows): pure red (C=0, M=255, Y=255, K=0)."""
    from PIL import Image

    path = Path(directory) / "cmyk.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(path, quality=95)
    return path, {"ok": True, "rgb": (255, 0, 0), "tol": 12, "source": "CMYK JPEG"}


def tiny_4x4(directory):
    """A 4x4 RGB PNG (an icon): refused at a 32 px input (below a quarter of the input size), not
    upscaled 8x into blur; the message names the file and its size."""
    from PIL import Image

    path = Path(directory) / "tiny.png"
    Image.new("RGB", (4, 4), (50, 100, 150)).save(path)
    return path, {"ok": False, "error": "ProbeError", "match": r"tiny\.png.*4x4 px.*too small",
                  "source": "thumbnail / icon"}


def truncated_jpeg(directory):
    """The first half of a JPEG: refused with a ProbeError naming the file."""
    from PIL import Image

    path = Path(directory) / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, {"ok": False, "error": "ProbeError", "match": r"cut\.jpg", "source": "interrupted copy"}


IMAGES = {f.__name__: f for f in (png16_gray, png16_rgb, palette_png, grayscale_png, rgba_png, cmyk_jpeg,
                                  tiny_4x4, truncated_jpeg)}


def make_probe_folder(directory) -> tuple[Path, dict[str, dict]]:
    """An ImageFolder-like tree of every readable image above, one class folder per image kind.

    Returns the root and ``{relative path: expect}``.
    """
    root = Path(directory) / "probe"
    expects = {}
    for name, gen in IMAGES.items():
        d = root / name
        d.mkdir(parents=True)
        path, expect = gen(d)
        if expect["ok"]:
            expects[path.relative_to(root).as_posix()] = expect
        else:
            path.unlink()
            d.rmdir()
    return root, expects
