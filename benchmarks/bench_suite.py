"""The whole claims suite (P1 + P2, exemplar stimuli) on one model: wall time and forward passes.

    python benchmarks/bench_suite.py [--model zoo:resnet18-synth96] [--images 2000]

Also prints what the papers' pipeline would cost for the same blocks: one forward per
module per channel per stimulus for the measurements, plus feature-visualization
optimization (2560 steps per module and channel) for the stimuli themselves.
"""

from __future__ import annotations

import argparse
import time

from resstream_assert.capture import COUNTERS
from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:resnet18-synth96")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--claims", default=None, help="comma-separated claim ids (default: all)")
    args = ap.parse_args()
    wb = Pipeline(RunConfig(models=(args.model,), images=args.images, progress=False))
    t0 = time.perf_counter()
    results = wb.evaluate(args.model, claims=args.claims.split(",") if args.claims else None)
    wall = time.perf_counter() - t0
    rmap = wb.map(args.model)
    analysed = list(rmap)[1:]
    channels = sum(b.channels for b in analysed)
    # Papers: per analysed channel, 3 feature visualizations (O, I, B) x 2560 optimisation steps, then
    # 9 activations (3 modules x 3 stimuli) + S and S^-1 copies (4 more) read one forward at a time.
    paper_fz, paper_measure = channels * 3 * 2560, channels * 13
    print(f"model {args.model}: {len(rmap)} blocks, {channels} analysed channels, {args.images} probe images")
    for cid, r in results.items():
        print(f"  {cid:<4} {r.verdict.value:<15} {r.reason[:90]}")
    print(f"wall time {wall:.1f} s; forward passes: {COUNTERS['batches']} batches, {COUNTERS['images']} images "
          "(capture; ablation tail passes are counted by benchmarks/bench_ablation.py)")
    print(f"papers' pipeline for the same channels: {paper_measure} single-image forwards for the measures "
          f"+ {paper_fz:,} forward+backward optimisation steps for the stimuli")


if __name__ == "__main__":
    main()
