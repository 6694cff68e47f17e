"""CUDA path check (run on a GPU machine): capture on cuda equals capture on cpu, claims agree.

    python benchmarks/device_check.py [--out DIR] [--device cuda]

Prints per-site max relative differences (cuda vs cpu, TF32 disabled and enabled), the
faithfulness check, capture timings, and the claim verdicts on both devices; writes
device_check.json into --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline
from resstream_assert.loading.random_weights import randomize_bn


def site_diffs(a, b) -> float:
    worst = 0.0
    for key in a.center:
        for x, y in ((a.center[key], b.center[key]), (a.mean[key], b.mean[key])):
            worst = max(worst, float(np.abs(x - y).max() / (np.abs(y).max() + 1e-6)))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny sizes, for a dry run of the script on a CPU")
    args = ap.parse_args()
    n_img, size, n_probe, n_random = (16, 64, 64, 5) if args.small else (128, 224, 256, 50)
    out: dict = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                 "cuda_available": torch.cuda.is_available(), "device": args.device}
    if args.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.resnet18().eval())
    rmap = discover_torch(model, size)
    images = np.random.default_rng(0).random((n_img, 3, size, size), dtype=np.float32)
    batches = [images[i:i + 32] for i in range(0, n_img, 32)]
    ref = capture_torch(model, rmap, batches, device="cpu")
    model.to("cpu")
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        t = time.perf_counter()
        got = capture_torch(model, rmap, batches, device=args.device)  # includes the faithfulness check
        out[f"capture_s_tf32_{tf32}"] = time.perf_counter() - t
        out[f"max_rel_diff_tf32_{tf32}"] = site_diffs(got, ref)
        out[f"logit_argmax_agree_tf32_{tf32}"] = float((got.logits.argmax(1) == ref.logits.argmax(1)).mean())
        model.to("cpu")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    t = time.perf_counter()
    capture_torch(model, rmap, batches, device="cpu")
    out["capture_s_cpu"] = time.perf_counter() - t
    # The claims on both devices, same model and probe (TF32 off).
    path = Path(args.out) / "w.pth"
    torch.save(model.state_dict(), path)
    spec = f"torchvision:resnet18@{path}"
    claims = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10"]
    verdicts = {}
    for dev in ("cpu", args.device):
        wb = Pipeline(RunConfig(models=(spec,), images=n_probe, input_size=96, device=dev, progress=False,
                                 claim_options={"lesion_n_random": n_random}))
        t = time.perf_counter()
        res = wb.evaluate(spec, claims=claims)
        out[f"claims_s_{dev}"] = time.perf_counter() - t
        verdicts[dev] = {c: (r.verdict.value, r.statistic, r.effect) for c, r in res.items()}
    out["verdicts"] = verdicts
    out["verdicts_agree"] = all(verdicts["cpu"][c][0] == verdicts[args.device][c][0] for c in claims)
    print(json.dumps(out, indent=1, default=str))
    (Path(args.out) / "device_check.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
