"""Capture overhead: all sites of all blocks vs a plain forward over the same images.

    python benchmarks/bench_capture.py [--images 256] [--batch 32] [--size 224] [--repeats 3]

Prints the median wall time of each and their ratio (target <= 1.15). Timings alternate
between the two so that background load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision

from resstream_assert.capture.torch_fx import capture_torch, normalizer
from resstream_assert.discovery.torch_graph import discover_torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    rmap = discover_torch(model, args.size)
    images = np.random.default_rng(0).random((args.images, 3, args.size, args.size), dtype=np.float32)
    batches = [images[i:i + args.batch] for i in range(0, args.images, args.batch)]
    norm = normalizer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "cpu")

    def plain() -> None:
        with torch.inference_mode():
            for b in batches:
                model(norm(b))

    def captured() -> None:
        capture_torch(model, rmap, batches, check_faithful=False)

    plain(), captured()  # warm-up
    times: dict[str, list[float]] = {"plain": [], "capture": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("capture", captured)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    sites = sum(len(b.sites) for b in rmap)
    print(f"resnet18 {args.size}px, {args.images} images, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{len(rmap)} blocks x 5 sites ({sites} taps before de-duplication)")
    print(f"plain forward   {med['plain']:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['plain'])})")
    print(f"capture         {med['capture']:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['capture'])})")
    print(f"ratio capture / plain = {med['capture'] / med['plain']:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
