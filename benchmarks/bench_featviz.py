"""Benchmark: batched feature visualization vs one objective at a time through the whole network.

CPU, ``zoo:resnet18-synth96`` at 96 px, one block (default ``layer2.1``), its three sites
(I = skip_out, B = branch_out, O = resid_sum) x N channels, identical settings and steps:

- **ours**: every target in one :func:`optimize` call (chunks of ``--batch-size``), the
  forward cut after the block, channels_last;
- **papers' way** (torch-lucent 0.1.8 style): one target at a time (batch 1), the forward
  through the whole network (``truncate=False``), contiguous NCHW; a sample of targets,
  extrapolated to all;
- **reference**: a plain forward pass of the whole model over the same number of images,
  batch ``--batch-size`` (what one image-step's forward costs, without backward).

Printed: image-steps per second of each, the ratio ours / papers' way (the issue's target is
>= 20x), wall time and CPU time (CPU time is robust to other jobs on a shared machine), and
how far batched and alone images end apart on the sample.

    PYTHONPATH=. nice python benchmarks/bench_featviz.py --steps 16 --channels 64 --sample 6
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from resstream_assert.stimuli.featviz import FeatvizSettings, make_targets, optimize
from resstream_assert.capture.featviz_responses import FEATVIZ_SITES
from resstream_assert.pipeline import load_model


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:resnet18-synth96")
    ap.add_argument("--block", default="layer2.1")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--sample", type=int, default=6, help="targets optimised one at a time (extrapolated)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from resstream_assert.discovery import discover

    loaded = load_model(args.model)
    block = discover(loaded)[args.block]
    targets = make_targets([block.index], FEATVIZ_SITES, range(min(args.channels, block.channels)))
    kw = dict(mean=loaded.mean, std=loaded.std, input_size=loaded.input_size)
    ours = FeatvizSettings(steps=args.steps, batch_size=args.batch_size, channels_last=True)
    papers = dataclasses.replace(ours, batch_size=1, channels_last=False, truncate=False)
    n, steps, size = len(targets), args.steps, loaded.input_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.model} {block.name} "
          f"(block {block.index}), {size} px, {n} targets (3 sites x {n // 3} channels), {steps} steps")

    batched, wall_b, cpu_b = timed(lambda: optimize(loaded.module, targets, ours, **kw))
    idx = np.linspace(0, n - 1, args.sample).round().astype(int).tolist()
    alone, wall_s, cpu_s = timed(lambda: [optimize(loaded.module, [targets[i]], papers, **kw) for i in idx])
    x = torch.rand(args.batch_size, 3, size, size)
    module = loaded.module.eval()
    n_fwd = max(1, (n * steps) // args.batch_size // 8)  # an eighth of the image-steps, enough for a rate

    def forwards():
        with torch.no_grad():
            for _ in range(n_fwd):
                module((x - 0.45) / 0.225)

    _, wall_f, cpu_f = timed(forwards)
    rate_b, rate_s = n * steps / wall_b, len(idx) * steps / wall_s
    rate_f = n_fwd * args.batch_size / wall_f
    cpu_rate_b, cpu_rate_s = n * steps / cpu_b, len(idx) * steps / cpu_s
    print(f"ours (batched, truncated, channels_last): {rate_b:.1f} image-steps/s wall, {cpu_rate_b:.1f} per CPU-s; "
          f"{n} targets x {steps} steps in {wall_b:.1f} s")
    print(f"papers' way (one at a time, whole network): {rate_s:.1f} image-steps/s wall, {cpu_rate_s:.1f} per CPU-s; "
          f"{len(idx)} targets in {wall_s:.1f} s, extrapolated to {n}: {n * steps / rate_s:.1f} s")
    print(f"reference (plain forward, whole model, batch {args.batch_size}, no grad): {rate_f:.1f} images/s wall")
    print(f"RATIO ours / papers' way: {rate_b / rate_s:.2f}x wall, {cpu_rate_b / cpu_rate_s:.2f}x CPU time "
          f"(issue target >= 20x); ours is {rate_f / rate_b:.1f} forward-pass-equivalents per image-step")
    # Same targets, same seeds: how far apart do batched (truncated) and alone (whole network) images end?
    diffs = [float(np.abs(r.images[0] - batched.images[i]).max()) for r, i in zip(alone, idx)]
    print(f"batched vs alone after {steps} steps: max |pixel| per target {', '.join(f'{d:.1e}' for d in diffs)}")


if __name__ == "__main__":
    main()
