"""False-positive rates of the gated claims on null data, with Monte-Carlo (Clopper-Pearson) intervals.

    PYTHONPATH=. python -m calibration.calibrate fpr [--instances 200] [--channels 64] [--images 512]
    PYTHONPATH=. python -m calibration.calibrate zoo [--instances 200] [--model zoo:cifar-resnet20-synth32]
    PYTHONPATH=. python -m calibration.calibrate controls [--seeds 10] [--images 256]

Each command prints a Markdown table (claim, null, false positives / instances, rate, 95% CI,
calibrated?) and writes JSON next to it under ``calibration/results/``. A claim is calibrated on a
null when the interval of its rate contains alpha = 0.05 or lies below it.

- ``fpr``: synthetic responses (:mod:`calibration.synthetic`) through ``measure_all`` and the
  claims. Nulls: ``exchangeable`` (every transform of an image is another draw of the same kind:
  no scale effect, no gain-M association), ``noise`` (the same, transforms add noise without
  shrinking), ``inhibitory`` (as ``exchangeable`` with negatively correlated input and branch), and
  for C1 ``boundary`` (in every analysed block one category at exactly 5%) and ``partial`` (3 of 7
  blocks with a full spectrum, 4 at the boundary: the claim needs 4).
- ``zoo``: responses of a trained zoo model with the channel labels shuffled inside each block:
  the branch gains against M (C3), the branch channels against the shortcut's in every variant
  (C5, C8, C9), and S against S^-1 per channel in the branch (C6).
- ``controls``: the model-level check, the zoo model with ``+nc-perm`` and ``+nc-rand`` at
  several seeds (each seed another permutation or initialisation), run through the pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibration.synthetic import ALL_VARIANTS, Effects, spectrum_context, synthetic_responses
from resstream_assert.capture.responses import Responses, site_key
from resstream_assert.claims import REGISTRY, ClaimOptions
from resstream_assert.claims.verdict_stability import evaluate_responses
from resstream_assert.stats.effects import clopper_pearson
from resstream_assert.measures import MeasureOptions, measure_all

ALPHA = 0.05
GATED = tuple(c for c in ("C1", "C3", "C5", "C6", "C8", "C9") if REGISTRY[c].gate)
RESULTS = Path(__file__).parent / "results"
#: Claims for which a negative control is a null by construction: nc-perm breaks the pairing of each
#: branch channel with its shortcut channel, which C5 and C8 (channel-mismatch null) and C9 (compensation
#: within a channel) need; it keeps a spectrum (C1), gains that set the branch's size (C3) and any
#: channel-unspecific zoom preference (C6). nc-rand is no null by construction for any of them.
CONTROL_NULLS = {"nc-perm": ("C5", "C8", "C9"), "nc-rand": ()}
SYNTHETIC_NULLS = {
    "exchangeable": (Effects(), ("C3", "C5", "C6", "C8", "C9")),
    "noise": (Effects(regress=False), ("C5", "C6", "C8", "C9")),
    "inhibitory": (Effects(kappa=(-0.6, -0.2)), ("C5", "C6", "C8", "C9")),
}


def rate_row(claim: str, null: str, k: int, n: int, extra: dict | None = None,
             blocks: tuple[int, int] | None = None) -> dict:
    """One table row: false positives ``k`` of ``n`` null instances with the Clopper-Pearson 95% interval;
    ``blocks`` = (tested blocks with raw p < alpha, tested blocks): the block test's own size."""
    lo, hi = clopper_pearson(k, n)
    row = {"claim": claim, "null": null, "false_positives": k, "instances": n, "rate": k / n, "ci_low": lo,
           "ci_high": hi, "calibrated": bool(lo <= ALPHA), **(extra or {})}
    if blocks is not None and blocks[1]:
        b_lo, b_hi = clopper_pearson(*blocks)
        row.update(block_rejections=blocks[0], blocks_tested=blocks[1], block_rate=blocks[0] / blocks[1],
                   block_ci_low=b_lo, block_ci_high=b_hi)
    return row


def markdown(rows: list[dict], note: str = "") -> str:
    """The rows as a Markdown table."""
    out = ["| claim | null | false positives | rate | 95% CI | calibrated | blocks with raw p < 0.05 [95% CI] |",
           "|---|---|---:|---:|---|---|---|"]
    for r in rows:
        blocks = (f"{r['block_rejections']}/{r['blocks_tested']} = {r['block_rate']:.3f} "
                  f"[{r['block_ci_low']:.3f}, {r['block_ci_high']:.3f}]" if r.get("blocks_tested") else "")
        verdict = "yes" if r["calibrated"] else "**NO**"
        if r.get("is_null") is False:
            verdict = "not a null for this claim"
        out.append(f"| {r['claim']} | {r['null']} | {r['false_positives']}/{r['instances']} | {r['rate']:.3f} | "
                   f"{r['ci_low']:.3f}-{r['ci_high']:.3f} | {verdict} | {blocks} |")
    return "\n".join(out) + (f"\n\n{note}" if note else "")


def _outcome(result) -> tuple[str, int, int]:
    """(verdict, tested blocks with raw p < alpha, tested blocks) of one claim result."""
    tested = [r for r in result.rows if r.verdict.value in ("holds", "fails")]
    return result.verdict.value, sum(r.p_value < ALPHA for r in tested), len(tested)


def _tally(claim: str, null: str, outcomes: list[tuple[str, int, int]]) -> dict:
    return rate_row(claim, null, sum(o[0] == "holds" for o in outcomes), len(outcomes),
                    blocks=(sum(o[1] for o in outcomes), sum(o[2] for o in outcomes)))


def _synthetic_instance(args: tuple) -> dict[str, tuple[str, int, int]]:
    kind, seed, channels, images = args
    effects, claims = SYNTHETIC_NULLS[kind]
    rmap, resp = synthetic_responses(seed, n_images=images, channels=channels, effects=effects,
                                     variants=ALL_VARIANTS)
    out = evaluate_responses(rmap, resp, claims, options=ClaimOptions(n_boot=0), seed=seed)
    return {c: _outcome(r) for c, r in out.items()}


def _spectrum_instance(args: tuple) -> tuple[str, int, int]:
    kind, seed, channels = args
    rng = np.random.default_rng([seed, 7])
    rare = rng.integers(3)  # which category sits at the boundary, per instance
    boundary = tuple(0.05 if i == rare else 0.475 for i in range(3))
    probs = [boundary] * 7 if kind == "boundary" else [(1 / 3,) * 3] * 3 + [boundary] * 4
    ctx = spectrum_context(seed, probs, channels=channels, options=ClaimOptions(n_boot=0))
    return _outcome(REGISTRY["C1"].evaluate(ctx.for_claim(REGISTRY["C1"])))


def _pool(jobs: int):
    return ProcessPoolExecutor(jobs) if jobs > 1 else None


def _map(pool, fn, items):
    return list(pool.map(fn, items, chunksize=4)) if pool else [fn(x) for x in items]


def run_fpr(instances: int, channels: int, images: int, jobs: int = 1, seed0: int = 0,
            nulls: tuple[str, ...] = ("boundary", "partial", *SYNTHETIC_NULLS)) -> list[dict]:
    """False-positive rates on the synthetic nulls (``fpr``)."""
    rows, pool = [], _pool(jobs)
    try:
        for kind in [k for k in ("boundary", "partial") if k in nulls]:
            outcomes = _map(pool, _spectrum_instance, [(kind, seed0 + i, channels) for i in range(instances)])
            rows.append(_tally("C1", f"spectrum {kind} (synthetic measures, {channels} ch)", outcomes))
        for kind, (_, claims) in [kv for kv in SYNTHETIC_NULLS.items() if kv[0] in nulls]:
            t0 = time.perf_counter()
            verdicts = _map(pool, _synthetic_instance, [(kind, seed0 + i, channels, images) for i in range(instances)])
            print(f"  {kind}: {instances} instances in {time.perf_counter() - t0:.0f} s", flush=True)
            for c in claims:
                rows.append(_tally(c, f"{kind} (synthetic responses, {channels} ch x {images} img)",
                                   [v[c] for v in verdicts]))
    finally:
        if pool:
            pool.shutdown()
    return sorted(rows, key=lambda r: (int(r["claim"][1:]), r["null"]))


# --- nulls built from a zoo model's real responses -------------------------------------------------

def _permute_branch(rmap, resp: dict, rng: np.random.Generator) -> dict:
    """Every variant with each block's branch channels permuted (the same way in all variants)."""
    perms = {b.index: rng.permutation(b.channels) for b in rmap}
    out = {}
    for v, r in resp.items():
        center = dict(r.center)
        for b in rmap:
            p = perms[b.index]
            branch = r.get(b, "branch_out")[:, p]
            total = r.get(b, "skip_out") + branch
            center[site_key(b.index, "branch_out")] = branch
            center[site_key(b.index, "resid_sum")] = total
            center[site_key(b.index, "resid_post")] = np.maximum(total, 0) if b.post_activation else total
        out[v] = Responses(v, center, center, r.logits)
    return out


def _swap_directions(rmap, resp: dict, rng: np.random.Generator) -> dict:
    """S and S^-1 swapped in the branch of a random half of each block's channels."""
    s, sinv = dict(resp["S"].center), dict(resp["Sinv"].center)
    for b in rmap:
        key = site_key(b.index, "branch_out")
        swap = rng.random(b.channels) < 0.5
        a, c = s[key].copy(), sinv[key].copy()
        a[:, swap], c[:, swap] = sinv[key][:, swap], s[key][:, swap]
        s[key], sinv[key] = a, c
    return {**resp, "S": Responses("S", s, s, None), "Sinv": Responses("Sinv", sinv, sinv, None)}


def _zoo_instance(args: tuple) -> dict[str, tuple[str, int, int]]:
    rmap, resp, measures, seed = args
    rng = np.random.default_rng([seed, 11])
    opts, out = ClaimOptions(n_boot=0), {}
    from resstream_assert.claims.base import ClaimContext

    shuffled = tuple(replace(bm, branch_gain=None if bm.branch_gain is None else rng.permutation(bm.branch_gain))
                     for bm in measures)
    ctx = ClaimContext("zoo", "torch", rmap, shuffled, resp, opts, seed)
    out["C3"] = _outcome(REGISTRY["C3"].evaluate(ctx.for_claim(REGISTRY["C3"])))
    perm = evaluate_responses(rmap, _permute_branch(rmap, resp, rng), ["C5", "C8", "C9"], options=opts, seed=seed)
    out.update({c: _outcome(r) for c, r in perm.items()})
    out["C6"] = _outcome(evaluate_responses(rmap, _swap_directions(rmap, resp, rng), ["C6"], options=opts,
                                            seed=seed)["C6"])
    return out


def zoo_responses(model: str, images: int, cache_dir: str | None):
    """A zoo model's map and responses to every variant the claims read (captured once, cached on disk)."""
    from resstream_assert.claims import needed_variants
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    pipe = Pipeline(RunConfig(models=(model,), images=images, progress=False, cache_dir=cache_dir))
    variants = needed_variants(GATED)
    return pipe.map(model), pipe.responses(model, variants)


def run_zoo(model: str, instances: int, images: int, cache_dir: str | None, jobs: int = 1) -> list[dict]:
    """False-positive rates on channel-shuffled responses of a trained model (``zoo``)."""
    rmap, resp = zoo_responses(model, images, cache_dir)
    measures = tuple(measure_all(rmap, resp, MeasureOptions()))
    pool = _pool(jobs)
    try:
        verdicts = _map(pool, _zoo_instance, [(rmap, resp, measures, i) for i in range(instances)])
    finally:
        if pool:
            pool.shutdown()
    shuffled = "branch channels shuffled"
    names = {"C3": "branch gains shuffled against M", "C5": shuffled, "C8": shuffled, "C9": shuffled,
             "C6": "S and S^-1 swapped per branch channel"}
    return [_tally(c, f"{names[c]} ({model}, {images} img)", [v[c] for v in verdicts])
            for c in ("C3", "C5", "C6", "C8", "C9")]


def run_controls(model: str, seeds: int, images: int, cache_dir: str | None) -> list[dict]:
    """Holds-rates of the gated claims on ``model+nc-perm`` and ``+nc-rand`` over seeds (``controls``)."""
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    counts: dict[tuple[str, str], list[str]] = {}
    for control in ("nc-perm", "nc-rand"):
        for seed in range(seeds):
            spec = f"{model}+{control}"
            t0 = time.perf_counter()
            pipe = Pipeline(RunConfig(models=(spec,), images=images, progress=False, cache_dir=cache_dir, seed=seed))
            res = pipe.evaluate(spec, claims=list(GATED))
            print(f"  {spec} seed {seed}: {time.perf_counter() - t0:.0f} s "
                  + " ".join(f"{c}={r.verdict.value}" for c, r in res.items()), flush=True)
            for c, r in res.items():
                counts.setdefault((c, control), []).append(_outcome(r))
    rows = []
    for (c, control), outs in sorted(counts.items(), key=lambda kv: (int(kv[0][0][1:]), kv[0][1])):
        row = _tally(c, f"{model}+{control}, {images} img", outs)
        row.update({v: [o[0] for o in outs].count(v) for v in ("holds", "fails", "inconclusive", "not_applicable")})
        row["is_null"] = c in CONTROL_NULLS[control]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("fpr", "zoo", "controls"))
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--images", type=int, default=None, help="probe images (default 512; controls 256)")
    ap.add_argument("--model", default="zoo:cifar-resnet20-synth32")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--nulls", default="boundary,partial," + ",".join(SYNTHETIC_NULLS),
                    help="fpr: comma-separated nulls to run (default: all)")
    ap.add_argument("--cache-dir", default=None, help="response cache for zoo/controls (default: none)")
    ap.add_argument("--out", default=None, help="JSON output (default calibration/results/<what>.json)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.what == "fpr":
        rows = run_fpr(args.instances, args.channels, args.images or 512, args.jobs,
                       nulls=tuple(args.nulls.split(",")))
    elif args.what == "zoo":
        rows = run_zoo(args.model, args.instances, args.images or 512, args.cache_dir, args.jobs)
    else:
        rows = run_controls(args.model, args.seeds, args.images or 256, args.cache_dir)
    wall = time.perf_counter() - t0
    out = Path(args.out) if args.out else RESULTS / f"{args.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": vars(args), "alpha": ALPHA, "wall_s": round(wall, 1), "rows": rows},
                              indent=1) + "\n")
    print(markdown(rows))
    print(f"\n{args.what}: {wall:.0f} s; written {out}")


if __name__ == "__main__":
    main()
