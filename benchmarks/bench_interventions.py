"""What the X1-X4 claims add to the main job: wall time next to a plain forward pass and the C claims.

    PYTHONPATH=. python benchmarks/bench_interventions.py [--model zoo:resnet18-synth96] [--images 512]
                                                          [--opt-in] [--intervention KEY=VALUE ...]

In one process, on the same probe images and without the response cache: (1) a plain forward
pass over the images (the reference), (2) the papers' claims C1-C11 as the main job runs
them, (3) X1+X2 (one scaling run shared by both; on by default), and with ``--opt-in``
(4) X3 and (5) X4. Prints each time, its ratio to the plain forward pass and to (2), and
the verdicts.
"""

from __future__ import annotations

import argparse
import time

from resstream_assert.claims import REGISTRY, claim_order
from resstream_assert.config import RunConfig, parse_intervention_options
from resstream_assert.pipeline import Pipeline


def plain_forward(wb: Pipeline, model: str) -> float:
    """Seconds for one forward pass of the model over the probe images (batches of 64, no taps)."""
    import torch

    loaded = wb.model(model)
    probe = wb.probe(loaded.input_size)
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    module = loaded.module.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(probe), 64):
            module((torch.as_tensor(probe.images[i:i + 64]).float() / 255 - mean) / std)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:resnet18-synth96")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--opt-in", action="store_true", help="also time X3 and X4 (opt-in claims)")
    ap.add_argument("--intervention", action="append", default=[], help="KEY=VALUE, as --resstream-intervention")
    args = ap.parse_args()
    options = {"intervention": parse_intervention_options(args.intervention)} if args.intervention else {}
    wb = Pipeline(RunConfig(models=(args.model,), images=args.images, progress=False, claim_options=options),
                  log=print)
    wb.model(args.model)
    fwd = plain_forward(wb, args.model)
    papers = [c for c in claim_order(REGISTRY) if c.startswith("C")]
    stages = [("C1-C11 (main job)", papers), ("X1+X2", ["X1", "X2"])]
    if args.opt_in:
        stages += [("X3", ["X3"]), ("X4", ["X4"])]
    times, results = {}, {}
    for name, ids in stages:
        start = time.perf_counter()
        results.update(wb.evaluate(args.model, "torch", ids))
        times[name] = time.perf_counter() - start
    main_job = times["C1-C11 (main job)"]
    print(f"\nmodel {args.model}, {args.images} probe images; plain forward pass {fwd:.1f} s")
    print(f"{'stage':<20} {'seconds':>8} {'x forward':>10} {'x main job':>11}")
    for name, t in times.items():
        print(f"{name:<20} {t:8.1f} {t / fwd:10.1f} {t / main_job:11.2f}")
    print(f"main job + X1+X2 = {(main_job + times['X1+X2']) / main_job:.2f} x the main job")
    for cid in [c for c in results if c.startswith("X")]:
        r = results[cid]
        print(f"  {cid}: {r.verdict.value:<14} {r.reason[:100]}")


if __name__ == "__main__":
    main()
