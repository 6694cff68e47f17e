"""X4 under nulls: how often a block's Kruskal-Wallis test is significant on NC-perm, and with permuted categories.

    PYTHONPATH=. python benchmarks/calibration_x4.py [--model zoo:cifar-resnet20-synth32] [--seeds 6]

For each seed: the model with NC-perm (branch channels permuted, seeded) is attributed
(X4), and each block's test is run twice: on the real categories of the NC-perm model, and
on the same categories permuted across the block's channels (an exact null: categories
exchangeable with importance). Prints the share of block tests with p < 0.05 for both.
NC-perm keeps each channel's magnitudes, which both M and attribution depend on, so the
first share is not expected to be 0.05; the second must be.
"""

from __future__ import annotations

import argparse

import numpy as np

from resstream_assert.claims import REGISTRY
from resstream_assert.claims.importance import category_test, plan_attribution
from resstream_assert.config import RunConfig, parse_intervention_options
from resstream_assert.pipeline import Pipeline
from resstream_assert.results import Verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:cifar-resnet20-synth32")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--intervention", action="append", default=["x4_images=32", "n_steps=8"])
    args = ap.parse_args()
    spec = args.model + "+nc-perm"
    io = parse_intervention_options(args.intervention)
    real, permuted = [], []
    for seed in range(args.seeds):
        wb = Pipeline(RunConfig(models=(spec,), images=args.images, seed=seed, progress=False,
                                claim_options={"intervention": io, "n_resamples": 999}))
        ctx = wb.context(spec, "torch", ["X4"]).for_claim(REGISTRY["X4"])
        data = wb.intervention(spec, "torch", plan_attribution(ctx))
        rng = np.random.default_rng(seed)
        for bl, bm in zip(data.blocks, ctx.analysed()):
            importance = np.abs(bl.per_image).mean(0)
            for out, cat in ((real, bm.category("p1")), (permuted, rng.permutation(bm.category("p1")))):
                r = category_test(ctx, bl.block, importance, cat, "mean |attribution|")
                if r.verdict != Verdict.INCONCLUSIVE:
                    out.append(r.p_value)
        print(f"seed {seed}: {len(real)} block tests so far", flush=True)
    for name, ps in (("NC-perm categories", real), ("permuted categories", permuted)):
        ps = np.asarray(ps)
        se = np.sqrt(0.05 * 0.95 / max(len(ps), 1))
        print(f"{name:<20} p < 0.05 in {np.mean(ps < 0.05):.1%} of {len(ps)} block tests (0.05 +- {se:.3f} expected "
              "under an exact null)")


if __name__ == "__main__":
    main()
