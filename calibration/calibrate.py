"""False-positive rates of the claims on null instances, with Clopper-Pearson intervals.

    PYTHONPATH=. python -m calibration.calibrate real [--model zoo:resnet18-synth96] [--instances 600]
    PYTHONPATH=. python -m calibration.calibrate fpr [--instances 600] [--channels 64] [--images 512]
    PYTHONPATH=. python -m calibration.calibrate controls [--seeds 10] [--images 256]

A false positive is a claim that *holds* on an instance built so that it must not. **A claim is
calibrated on a null when the Clopper-Pearson 95% upper bound of its false-positive rate is at
most alpha = 0.05**: the data must show the rate is not above alpha, not merely fail to show it
is (0 of 200 nulls bounds the rate by 1.8%; 0 of 50 only by 7.1%, too few nulls to say). Each
row also counts the tested blocks with raw p < alpha, the block test's own size.

- ``real``: nulls built from a trained zoo model's captured responses (:mod:`calibration.nulls`):
  NC-perm at the response level (C4, C5, C6, C8, C9), branch responses decoupled from the input
  across images (C4), branch gains shuffled (C3).
- ``fpr``: synthetic responses (:mod:`calibration.generator`) and, for C1, synthetic measures.
  Nulls: ``exchangeable``, ``noise``, ``inhibitory``, ``independent`` (input and branch
  independent: C4), ``zoom-bias`` (every branch channel prefers the papers' blurry zoom-in on any
  image: C6), and for C1 ``boundary`` and ``partial``.
- ``controls``: the model-level check, ``+nc-perm`` / ``+nc-rand`` models at several seeds.

Runs are long: they use one thread, append each instance's outcome to a checkpoint
(``calibration/results/checkpoints/*.jsonl``) and resume from it, so a run can be stopped and
started again. Tables, figures and the summary are written by :mod:`calibration.report`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from calibration import nulls
from calibration.generator import ALL_VARIANTS, Effects, spectrum_context, synthetic_responses
from resstream_assert.claims import REGISTRY, ClaimOptions
from resstream_assert.claims.base import ClaimContext
from resstream_assert.claims.verdict_stability import evaluate_responses
from resstream_assert.stats.effects import clopper_pearson
from resstream_assert.measures import MeasureOptions, measure_all

ALPHA = 0.05
#: Bootstrap resamples per claim. The three-answer rule needs each block's interval: with none (n_boot=0)
#: C3, C5, C8 and C9 can never hold, and a null on which they never hold shows nothing. 200 costs about as
#: much as none on these instances; ``tests/test_calibration.py`` checks that planted effects hold with it.
N_BOOT = 200
RESULTS = Path(__file__).parent / "results"
CHECKPOINTS = RESULTS / "checkpoints"
#: Claims for which a negative control is a null by construction (model-level check).
CONTROL_NULLS = {"nc-perm": ("C4", "C5", "C6", "C8", "C9"), "nc-rand": ()}
SYNTHETIC_NULLS = {
    "exchangeable": (Effects(), ("C3", "C5", "C6", "C8", "C9")),
    "noise": (Effects(regress=False), ("C5", "C6", "C8", "C9")),
    "inhibitory": (Effects(kappa=(-0.6, -0.2)), ("C5", "C6", "C8", "C9")),
    "independent": (Effects(kappa=(0.0, 0.0)), ("C4",)),
    "zoom-bias": (Effects(zoom_bias=0.3), ("C6",)),
}
#: Real nulls: name -> (claims, what it is).
REAL_NULLS = {
    "nc-perm": (("C5", "C6", "C8", "C9"), "branch channels permuted (NC-perm on the responses)"),
    "nc-perm-c4": (("C4",), "branch channels permuted (NC-perm on the responses; for C4 a control, not a strict "
                            "null: a permuted branch still depends on the input)"),
    "decoupled": (("C4",), "branch decoupled from the input across images"),
    "gains": (("C3",), "branch gains shuffled against M"),
}


def nulls_needed(rate: float, alpha: float = ALPHA) -> int | None:
    """Fewest null instances whose Clopper-Pearson upper bound at this observed rate is <= alpha (None: never).

    Example:
        >>> nulls_needed(0.0), nulls_needed(0.03), nulls_needed(0.06)
        (72, 415, None)
    """
    if rate >= alpha:
        return None
    n = 10
    while clopper_pearson(round(rate * n), n)[1] > alpha:
        n = math.ceil(n * 1.02) + 1
    lo = n // 2
    while lo < n:  # the first n that passes, by bisection over the last step
        mid = (lo + n) // 2
        lo, n = (lo, mid) if clopper_pearson(round(rate * mid), mid)[1] <= alpha else (mid + 1, n)
    return n


def rate_row(claim: str, null: str, k: int, n: int, extra: dict | None = None,
             blocks: tuple[int, int] | None = None) -> dict:
    """One table row: ``k`` false positives of ``n`` null instances, the Clopper-Pearson 95% interval, and
    ``calibrated`` = the interval's upper bound <= alpha; ``blocks`` = (tested blocks with raw p < alpha,
    tested blocks).

    Example:
        >>> rate_row("C1", "x", 10, 200)["calibrated"], rate_row("C1", "x", 0, 200)["calibrated"]
        (False, True)
    """
    lo, hi = clopper_pearson(k, n)
    row = {"claim": claim, "null": null, "false_positives": k, "instances": n, "rate": k / n, "ci_low": lo,
           "ci_high": hi, "calibrated": bool(hi <= ALPHA), "nulls_needed": nulls_needed(k / n), **(extra or {})}
    if blocks is not None and blocks[1]:
        b_lo, b_hi = clopper_pearson(*blocks)
        row.update(block_rejections=blocks[0], blocks_tested=blocks[1], block_rate=blocks[0] / blocks[1],
                   block_ci_low=b_lo, block_ci_high=b_hi)
    return row


def outcome(result) -> tuple[str, int, int]:
    """(verdict, tested blocks with raw p < alpha, tested blocks) of one claim result."""
    tested = [r for r in result.rows if r.verdict.value in ("holds", "fails")]
    return result.verdict.value, sum(r.p_value < ALPHA for r in tested), len(tested)


def tally(claim: str, null: str, outcomes: list) -> dict:
    """The rate row of a list of outcomes."""
    return rate_row(claim, null, sum(o[0] == "holds" for o in outcomes), len(outcomes),
                    blocks=(sum(o[1] for o in outcomes), sum(o[2] for o in outcomes)))


class Checkpoint:
    """Per-instance outcomes appended to a JSON-lines file, read back on a restart (``seed -> outcomes``)."""

    def __init__(self, name: str):
        CHECKPOINTS.mkdir(parents=True, exist_ok=True)
        self.path = CHECKPOINTS / f"{name}.jsonl"
        self.done: dict[int, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.done[int(rec["seed"])] = rec["out"]

    def run(self, seeds, fn, say: str = "") -> list[dict]:
        """``fn(seed) -> {claim: outcome}`` for every seed not done yet; all outcomes, in seed order."""
        t0, todo = time.perf_counter(), [s for s in seeds if s not in self.done]
        with self.path.open("a") as f:
            for i, seed in enumerate(todo):
                self.done[seed] = {c: list(o) for c, o in fn(seed).items()}
                f.write(json.dumps({"seed": seed, "out": self.done[seed]}) + "\n")
                f.flush()
                if say and (i + 1) % 25 == 0:
                    print(f"  {say}: {i + 1}/{len(todo)} in {time.perf_counter() - t0:.0f} s", flush=True)
        return [self.done[s] for s in seeds]


# --- synthetic nulls -------------------------------------------------------------------------------

def _synthetic_instance(kind: str, seed: int, channels: int, images: int) -> dict:
    effects, claims = SYNTHETIC_NULLS[kind]
    rmap, resp = synthetic_responses(seed, n_images=images, channels=channels, effects=effects,
                                     variants=ALL_VARIANTS if claims != ("C4",) else ("id",))
    out = evaluate_responses(rmap, resp, claims, options=ClaimOptions(n_boot=N_BOOT), seed=seed)
    return {c: outcome(r) for c, r in out.items()}


def _spectrum_instance(kind: str, seed: int, channels: int) -> dict:
    rng = np.random.default_rng([seed, 7])
    rare = rng.integers(3)  # which category sits at the boundary, per instance
    boundary = tuple(0.05 if i == rare else 0.475 for i in range(3))
    probs = [boundary] * 7 if kind == "boundary" else [(1 / 3,) * 3] * 3 + [boundary] * 4
    ctx = spectrum_context(seed, probs, channels=channels, options=ClaimOptions(n_boot=N_BOOT))
    return {"C1": outcome(REGISTRY["C1"].evaluate(ctx.for_claim(REGISTRY["C1"])))}


def run_fpr(instances: int, channels: int, images: int, nulls_: tuple[str, ...], tag: str = "") -> list[dict]:
    """False-positive rates on the synthetic nulls (``fpr``)."""
    rows = []
    for kind in nulls_:
        name = f"fpr-{kind}-{channels}ch-{images}img{tag}"
        if kind in ("boundary", "partial"):
            got = Checkpoint(name).run(range(instances), lambda s, k=kind: _spectrum_instance(k, s, channels), name)
            rows.append(tally("C1", f"synthetic measures: {kind} ({channels} ch)", [g["C1"] for g in got]))
            continue
        got = Checkpoint(name).run(range(instances), lambda s, k=kind: _synthetic_instance(k, s, channels, images),
                                   name)
        for c in SYNTHETIC_NULLS[kind][1]:
            rows.append(tally(c, f"synthetic: {kind} ({channels} ch x {images} img)", [g[c] for g in got]))
    return rows


# --- nulls built from a trained model's responses --------------------------------------------------

def zoo_responses(model: str, images: int, cache_dir: str | None):
    """A zoo model's map and responses to every variant the claims read (captured once, cached on disk)."""
    from resstream_assert.claims import needed_variants
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    pipe = Pipeline(RunConfig(models=(model,), images=images, progress=False, cache_dir=cache_dir))
    variants = needed_variants(["C1", "C3", "C4", "C5", "C6", "C8", "C9"])
    return pipe.map(model), pipe.responses(model, variants)


def _real_instance(kind: str, rmap, resp: dict, seed: int) -> dict:
    rng = np.random.default_rng([seed, 11])
    opts = ClaimOptions(n_boot=N_BOOT)
    claims = REAL_NULLS[kind][0]
    if kind == "gains":
        measures = nulls.shuffle_gains(tuple(measure_all(rmap, {"id": resp["id"]}, MeasureOptions(tuning=False))),
                                       rng)
        ctx = ClaimContext("zoo", "torch", rmap, measures, {"id": resp["id"]}, opts, seed)
        return {"C3": outcome(REGISTRY["C3"].evaluate(ctx.for_claim(REGISTRY["C3"])))}
    transform = {"nc-perm": nulls.permute_branch, "nc-perm-c4": nulls.permute_branch,
                 "decoupled": nulls.decouple_images}[kind]
    need = resp if kind == "nc-perm" else {"id": resp["id"]}  # C4 reads the untransformed responses only
    out = evaluate_responses(rmap, transform(rmap, need, rng), claims, options=opts, seed=seed)
    return {c: outcome(r) for c, r in out.items()}


def run_real(model: str, instances: int, images: int, cache_dir: str | None, kinds: tuple[str, ...]) -> list[dict]:
    """False-positive rates on nulls built from ``model``'s captured responses (``real``)."""
    rmap, resp = zoo_responses(model, images, cache_dir)
    rows = []
    for kind in kinds:
        name = f"real-{kind}-{model.replace(':', '_')}-{images}img"
        got = Checkpoint(name).run(range(instances), lambda s, k=kind: _real_instance(k, rmap, resp, s), name)
        for c in REAL_NULLS[kind][0]:
            rows.append(tally(c, f"{model}: {REAL_NULLS[kind][1]} ({images} img)", [g[c] for g in got]))
            if kind == "nc-perm-c4":
                rows[-1]["is_null"] = False
    return rows


def run_controls(model: str, seeds: int, images: int, cache_dir: str | None) -> list[dict]:
    """Holds-rates of the gated claims on ``model+nc-perm`` and ``+nc-rand`` over seeds (``controls``)."""
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    claims = ["C1", "C3", "C4", "C5", "C6", "C8", "C9"]
    rows = []
    for control in ("nc-perm", "nc-rand"):
        spec = f"{model}+{control}"

        def one(seed: int) -> dict:
            pipe = Pipeline(RunConfig(models=(spec,), images=images, progress=False, cache_dir=cache_dir, seed=seed))
            return {c: outcome(r) for c, r in pipe.evaluate(spec, claims=claims).items()}

        got = Checkpoint(f"controls-{spec.replace(':', '_')}-{images}img").run(range(seeds), one, spec)
        for c in claims:
            row = tally(c, f"{spec} ({images} img, model level)", [g[c] for g in got])
            row["is_null"] = c in CONTROL_NULLS[control]
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("fpr", "real", "controls"))
    ap.add_argument("--instances", type=int, default=600)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--images", type=int, default=None, help="probe images (default 512; controls 256)")
    ap.add_argument("--model", default="zoo:resnet18-synth96")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--nulls", default=None, help="comma-separated nulls (default: all of the command's)")
    ap.add_argument("--cache-dir", default=None, help="response cache for real/controls (default: none)")
    ap.add_argument("--out", default=None, help="JSON output (default calibration/results/<what>-...json)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # a shared machine: one core per run
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    images = args.images or (256 if args.what == "controls" else 512)
    if args.what == "fpr":
        kinds = tuple(args.nulls.split(",")) if args.nulls else ("boundary", "partial", *SYNTHETIC_NULLS)
        rows, stem = run_fpr(args.instances, args.channels, images, kinds), f"fpr-{args.channels}ch"
    elif args.what == "real":
        kinds = tuple(args.nulls.split(",")) if args.nulls else tuple(REAL_NULLS)
        rows = run_real(args.model, args.instances, images, args.cache_dir, kinds)
        stem = f"real-{args.model.split(':')[-1]}"
    else:
        rows, stem = run_controls(args.model, args.seeds, images, args.cache_dir), "controls"
    out = Path(args.out) if args.out else RESULTS / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": vars(args), "alpha": ALPHA, "wall_s": round(time.perf_counter() - t0, 1),
                               "rows": rows}, indent=1) + "\n")
    from calibration.report import fpr_markdown

    print(fpr_markdown(rows))
    print(f"\n{args.what}: {time.perf_counter() - t0:.0f} s; written {out}")


if __name__ == "__main__":
    main()
