"""Verdict stability of the claims on the zoo models: flip rates over probe half-samples and seeds.

    PYTHONPATH=. python -m calibration.stability [--models zoo:cifar-resnet20-synth32,...] [--images 512,2000]
                                                 [--runs 20] [--cache-dir DIR]

For every model and probe size, the pipeline captures the probe set once and evaluates the
claims that read responses only (C1-C9) with ``stability=runs`` (see
``resstream_assert.claims.verdict_stability``): each claim is re-evaluated on ``runs`` random halves of
the probe images with other seeds. Prints a Markdown table (verdict on the full set, flips,
rate with its Clopper-Pearson CI, stable or unstable at > 10%) and writes
``calibration/results/stability.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from resstream_assert.claims import ClaimOptions, needed_variants
from resstream_assert.claims.verdict_stability import STABILITY_THRESHOLD, response_claims, verdict_stability
from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline

RESULTS = Path(__file__).parent / "results"
ZOO = ("zoo:cifar-resnet20-synth32", "zoo:bottleneck-synth64", "zoo:resnet18-synth96")


def run(models, sizes, runs: int, cache_dir: str | None) -> list[dict]:
    """One row per (model, probe size, claim): the full verdict and its stability."""
    rows = []
    for model in models:
        for n in sizes:
            t0 = time.perf_counter()
            pipe = Pipeline(RunConfig(models=(model,), images=n, progress=False, cache_dir=cache_dir, stability=runs))
            results = pipe.evaluate(model, claims=response_claims())
            wall = time.perf_counter() - t0
            # cost of one re-evaluation alone (responses already captured): three more, timed
            t1 = time.perf_counter()
            verdict_stability(pipe.map(model), pipe.responses(model, needed_variants(results)), results, runs=3,
                              options=ClaimOptions.from_run(pipe.config.claim_options), seed=99)
            per_run = (time.perf_counter() - t1) / 3
            for cid, r in results.items():
                rows.append({"model": model, "images": n, "claim": cid, "gate": r.gate, "verdict": r.verdict.value,
                             "s_per_run": round(per_run, 2), **dict(r.stability)})
            print(f"  {model} at {n} images: {wall:.0f} s in all, {per_run:.2f} s per re-evaluation", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as one Markdown table."""
    out = ["| model | images | claim | verdict | flips | rate [95% CI] | at > 10% |", "|---|---:|---|---|---:|---|---|"]
    for r in rows:
        gate = "" if r["gate"] else " (report)"
        word = "**unstable**" if r["unstable"] else "stable"
        out.append(f"| {r['model']} | {r['images']} | {r['claim']}{gate} | {r['verdict']} | "
                   f"{int(r['flips'])}/{int(r['runs'])} | {r['rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] | "
                   f"{word} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--images", default="512")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=str(RESULTS / "stability.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = run(args.models.split(","), [int(x) for x in args.images.split(",")], args.runs, args.cache_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": vars(args), "threshold": STABILITY_THRESHOLD,
                               "wall_s": round(time.perf_counter() - t0, 1), "rows": rows}, indent=1) + "\n")
    print(markdown(rows))
    print(f"\nstability: {time.perf_counter() - t0:.0f} s; written {out}")


if __name__ == "__main__":
    main()
