"""Success rates of feature visualization per site (I = skip_out, B = branch_out, O = resid_sum), before
and after the rectified-site fix (``pass_relu``), on every analysed block of any model spec.

Success is the project's check, unchanged: the unit's response to its (8-bit) image is above the
99th percentile of its responses to the probe set. A unit that is constant over the probe set
(e.g. the zero-padded channels of an option-A shortcut) cannot pass it; those are counted apart
("live" rates leave them out).

    PYTHONPATH=. nice python benchmarks/featviz_success.py zoo:cifar-resnet20-synth32 --channels 16 \\
        --json cifar.json

Prints a table per block and the per-site totals for each side: ``before`` (the code before the
fix: no pass-through ReLU, the papers' jitter in px at any image size), ``jitter-only`` (the
jitter scaled to the image size alone) and ``after`` (both, the defaults), at the same steps,
seeds, channels and probe set.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from resstream_assert.config import RunConfig
from resstream_assert.capture.featviz_responses import FEATVIZ_SITES, SITE_LABELS
from resstream_assert.pipeline import Pipeline


#: Runs: before = the code before the fix (no pass-through ReLU, the papers' jitter in px at any size);
#: jitter-only = the scaled jitter alone (ablation); after = both (the defaults).
SIDES = {"before": (False, False), "jitter-only": (False, True), "after": (True, True)}


def rates(spec: str, args, side: str) -> dict:
    pass_relu, scale_jitter = SIDES[side]
    fv = {"steps": args.steps, "pass_relu": pass_relu, "scale_jitter": scale_jitter, "crop": not args.no_crop}
    cfg = RunConfig(models=(spec,), images=args.images, stimuli="featviz", channels=args.channels, seed=args.seed,
                    featviz=fv, cache_dir=None)
    pipe = Pipeline(cfg)
    start = time.process_time()
    fz = pipe.featviz(spec)
    seconds = time.process_time() - start
    probe = pipe.responses(spec, ("id",))["id"]
    rmap = pipe.map(spec)
    out: dict = {"side": side, "pass_relu": pass_relu, "scale_jitter": scale_jitter, "cpu_seconds": seconds,
                 "blocks": {}}
    totals = {SITE_LABELS[s]: [0, 0, 0, 0] for s in FEATVIZ_SITES}  # ok, n, ok live, n live
    row = 0
    for bi in fz.blocks:
        per = {SITE_LABELS[s]: [0, 0, 0, 0] for s in FEATVIZ_SITES}
        for t in bi.targets:
            live = float(np.ptp(probe.get(rmap[t.block], t.site)[:, t.channel])) > 0
            cell = per[SITE_LABELS[t.site]]
            cell[0] += int(fz.ok[row])
            cell[1] += 1
            cell[2] += int(fz.ok[row] and live)
            cell[3] += int(live)
            row += 1
        for k, v in per.items():
            totals[k] = [a + b for a, b in zip(totals[k], v)]
        out["blocks"][bi.name] = per
    out["totals"] = totals
    return out


def show(spec: str, result: dict) -> None:
    tag = f"{result['side']} (pass_relu {result['pass_relu']}, scale_jitter {result['scale_jitter']})"
    print(f"\n{spec}, {tag}: {result['cpu_seconds']:.0f} CPU-s")
    print(f"{'block':<12}" + "".join(f"{k:>16}" for k in ("I", "B", "O")))
    for name, per in list(result["blocks"].items()) + [("ALL", result["totals"])]:
        cells = [f"{ok}/{n} ({ok / max(n, 1):.0%})" for ok, n, _, _ in per.values()]
        print(f"{name:<12}" + "".join(f"{c:>16}" for c in cells))
    live = [f"{k} {okl}/{nl} ({okl / max(nl, 1):.0%})" for k, (_, _, okl, nl) in result["totals"].items()]
    print("live units only (not constant over the probe set): " + ", ".join(live))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="+", help="model specs, e.g. zoo:cifar-resnet20-synth32")
    ap.add_argument("--channels", type=int, default=16, help="channels sampled per block (default 16)")
    ap.add_argument("--steps", type=int, default=256, help="Adam steps (default 256, the project's default)")
    ap.add_argument("--images", type=int, default=512, help="probe images for the success thresholds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sides", default="before,after", help="comma-separated: before, jitter-only, after")
    ap.add_argument("--no-crop", action="store_true", help="whole-image forwards (the crop is exact; slower)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sides = args.sides.split(",")
    if not set(sides) <= set(SIDES):
        ap.error(f"--sides {args.sides}: use some of {', '.join(SIDES)}")
    results = {}
    for spec in args.spec:
        results[spec] = []
        for side in sides:
            r = rates(spec, args, side)
            show(spec, r)
            results[spec].append(r)
            if args.json:
                with open(args.json, "w") as fh:
                    json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
