"""Power of every gated claim: the share of planted-effect instances in which the claim holds.

    PYTHONPATH=. python -m calibration.power [--instances 40] [--claims scale,x1,c10]

Each family writes its cells to ``calibration/results/power.json`` (merged with the families already
there, so they can run separately) and a figure per claim via :mod:`calibration.report`. Claims keep
their default thresholds (alpha 0.05, Holm across blocks, each claim's ``mostly``). Synthetic
responses have the ResNet18 layout (7 analysed blocks, 4 with an identity shortcut, every block
with the same number of channels); runs use one thread and checkpoint every instance.

Families and their effect sizes (population values of the generator, :mod:`calibration.generator`):

- ``c1``: C1's rarest-category share, set exactly on synthetic measures (the other two categories share
  the rest), against channels per block;
- ``c3``: C3's population Spearman rho between M and the branch gain (a Gaussian copula on synthetic
  responses with ``log_scale_sd = 0.4``), against channels and probe images; the measured rho, attenuated by
  the noise of M, is kept beside the power.
- ``scale`` (C5, C6, C8, C9 from one instance): ``scale_size`` (in SDs of the channel's own input
  feature) on ``scale_frac = 0.3`` of the channels: the branch's response to zoomed-in images gains a
  copy of the input's feature, the input's response to zoomed-out images a copy of the branch's, and
  In falls while Pre rises along the zoom axis.
- ``x1`` (X1 and X2 share the block test): the net share of sampled channels whose M moves with the
  dose, ``(n_down - n_up) / n``, drawn per channel; the block test is the exact sign test on those
  signs (the dose-response rho of each channel is exact: edits are deterministic), so probe images do
  not enter.
- ``c10``: S*'s excess damage per unit zoom on synthetic lesion outcomes (:mod:`calibration.lesions`),
  two ablation blocks, both planted; the defaults (N = 40 sets, h = 2, zooms 1, 2) against N = 100,
  h = 10, four zooms, with the mean number of random sets run (the cost).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from calibration.calibrate import N_BOOT, Checkpoint
from calibration.generator import ALL_VARIANTS, Effects, synthetic_responses
from resstream_assert.claims import ClaimOptions
from resstream_assert.claims.verdict_stability import evaluate_responses

RESULTS = Path(__file__).parent / "results"
POWER = RESULTS / "power.json"
SCALE_CLAIMS = ("C5", "C6", "C8", "C9")


def _scale_instance(size: float, channels: int, images: int, seed: int, frac: float = 0.3) -> dict:
    rmap, resp = synthetic_responses(seed, n_images=images, channels=channels, variants=ALL_VARIANTS,
                                     effects=Effects(scale_frac=frac if size else 0.0, scale_size=size or 1.0))
    out = evaluate_responses(rmap, resp, SCALE_CLAIMS, options=ClaimOptions(n_boot=N_BOOT), seed=seed)
    return {c: [r.verdict.value] for c, r in out.items()}


def run_scale60(instances: int) -> list[dict]:
    """C5, C6, C8, C9 with the effect on 60% of the channels (size 1 and 2; 64 and 128 channels, 512 images)."""
    cells = []
    for size, ch in ((1.0, 64), (2.0, 64), (1.0, 128), (2.0, 128)):
        name = f"power-scale60-{size:g}-{ch}ch-512img"
        got = Checkpoint(name).run(range(instances), lambda s: _scale_instance(size, ch, 512, s, 0.6), name)
        cells += [{"claim": c, "config": "60% of channels planted", "effect": size, "channels": ch, "images": 512,
                   "instances": len(got), "power": sum(g[c][0] == "holds" for g in got) / len(got)}
                  for c in SCALE_CLAIMS]
    return cells


def run_scale(instances: int) -> list[dict]:
    """C5, C6, C8, C9 against scale_size x channels (64, 128; 256 at size 2) at 512 images, and against images
    (128, 2000) at size 2 and 64 channels (a grid that fits about 20 CPU minutes at 20 instances a cell)."""
    grid = [(s, ch, 512) for s in (0.0, 1.0, 2.0, 4.0) for ch in (64, 128)] + [(2.0, 256, 512)]
    grid += [(2.0, 64, n) for n in (128, 2000)]
    cells = []
    for size, ch, n in grid:
        name = f"power-scale-{size:g}-{ch}ch-{n}img"
        got = Checkpoint(name).run(range(instances), lambda s: _scale_instance(size, ch, n, s), name)
        for c in SCALE_CLAIMS:
            cells.append({"claim": c, "effect": size, "channels": ch, "images": n, "instances": len(got),
                          "power": sum(g[c][0] == "holds" for g in got) / len(got)})
        print(f"  scale {size:g} {ch} ch {n} img: " + " ".join(f"{c['claim']} {c['power']:.2f}"
                                                           for c in cells[-4:]), flush=True)
    return cells


def _x1_instance(share: float, channels: int, seed: int) -> str:
    from resstream_assert.claims import REGISTRY
    from resstream_assert.claims.base import row, summarize
    from resstream_assert.claims.gain_scaling import net_share
    from calibration.generator import spectrum_context

    rng = np.random.default_rng([seed, 19])
    ctx = spectrum_context(seed, [(1 / 3,) * 3] * 7, channels=8, options=ClaimOptions(n_boot=0)).for_claim(
        REGISTRY["X1"])
    rows = []
    for bm in ctx.analysed():
        rho = np.where(rng.random(channels) < (1 + share) / 2, -1.0, 1.0)  # -1: M rises as the gain falls
        rows.append(row(bm.block, net_share(rho, -1)))
    return summarize(ctx, rows, direction=1).verdict.value


def run_x1(instances: int) -> list[dict]:
    """X1/X2's block test (exact sign test on per-channel directions, Holm, half the blocks)."""
    cells = []
    for share in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9):  # X1/X2's boundary is a net share of 0.5
        for ch in (16, 32, 64, 128):
            got = [_x1_instance(share, ch, s) for s in range(instances)]
            cells.append({"claim": "X1/X2", "effect": share, "channels": ch, "images": 512, "instances": instances,
                          "power": got.count("holds") / instances})
    return cells


def _c10_claim(excess: float, images: int, config: dict, seed: int) -> tuple[bool, int]:
    """Both blocks planted; the claim holds when both reject after Holm (C10 needs every block)."""
    from resstream_assert.stats import holm

    from calibration.lesions import sequential_run, synthetic_lesions

    ps, used = [], 0
    for b in range(2):
        inst = synthetic_lesions(2 * seed + b, excess=excess, n_images=images, n_random=config["n"],
                                 zooms=config["zooms"])
        test, n_run = sequential_run(config["zooms"], *inst, config["h"], n_boot=0)
        ps.append(test.p_value)
        used += n_run
        if config["claim_stop"] and n_run < config["n"]:
            break  # the claim stops: this block cannot hold (h / N >= alpha)
    ok = len(ps) == 2 and bool(np.all(holm(ps) < 0.05))
    return ok, used


C10_CONFIGS = {"defaults: N=40, h=2, zooms 1,2": {"n": 40, "h": 2, "zooms": (1.0, 2.0), "claim_stop": True},
               "before: N=100, h=10, zooms 1,1.25,1.5,2": {"n": 100, "h": 10, "zooms": (1.0, 1.25, 1.5, 2.0),
                                                          "claim_stop": False}}


def run_c10(instances: int) -> list[dict]:
    """C10's claim power and cost (random sets run, both blocks) for each configuration."""
    cells = []
    for label, config in C10_CONFIGS.items():
        for excess in (0.0, 0.02, 0.04, 0.06, 0.1):
            for images in (128, 256, 448):
                got = [_c10_claim(excess, images, config, s) for s in range(instances)]
                cells.append({"claim": "C10", "config": label, "effect": excess, "channels": config["n"],
                              "images": images, "instances": instances,
                              "power": float(np.mean([g[0] for g in got])),
                              "mean_sets_run": float(np.mean([g[1] for g in got]))})
        print(f"  c10 {label}: done", flush=True)
    return cells


def _c3_instance(rho: float, channels: int, images: int, seed: int) -> dict:
    rmap, resp = synthetic_responses(seed, n_images=images, channels=channels,
                                     effects=Effects(gain_rho=rho, log_scale_sd=0.4))
    out = evaluate_responses(rmap, resp, ["C3"], options=ClaimOptions(n_boot=N_BOOT), seed=seed)["C3"]
    return {"C3": [out.verdict.value], "rho": [float(out.effect)]}


def run_c3(instances: int) -> list[dict]:
    """C3 against the planted rho x channels at 512 images, and against images (128, 2000) at rho = -0.3."""
    grid = [(r, ch, 512) for r in (-0.2, -0.3, -0.4, -0.5) for ch in (32, 64, 128, 256)]
    grid += [(-0.3, ch, n) for ch in (32, 64, 128, 256) for n in (128, 2000)]
    cells = []
    for rho, ch, n in grid:
        name = f"power-c3-{rho:g}-{ch}ch-{n}img"
        got = Checkpoint(name).run(range(instances), lambda s: _c3_instance(rho, ch, n, s), name)
        cells.append({"claim": "C3", "effect": rho, "channels": ch, "images": n, "instances": len(got),
                      "power": sum(g["C3"][0] == "holds" for g in got) / len(got),
                      "measured_rho": float(np.nanmean([g["rho"][0] for g in got]))})
        print(f"  c3 rho {rho:g} {ch} ch {n} img: {cells[-1]['power']:.2f}", flush=True)
    return cells


def _c1_instance(p_min: float, channels: int, seed: int) -> str:
    from resstream_assert.claims import REGISTRY
    from calibration.generator import spectrum_context

    rare = np.random.default_rng([seed, 5]).integers(3)
    probs = tuple(p_min if i == rare else (1 - p_min) / 2 for i in range(3))
    ctx = spectrum_context(seed, [probs] * 7, channels=channels, options=ClaimOptions(n_boot=0))
    return REGISTRY["C1"].evaluate(ctx.for_claim(REGISTRY["C1"])).verdict.value


def run_c1(instances: int) -> list[dict]:
    """C1 against the rarest category's share (its boundary is 5%) x channels per block, on synthetic measures."""
    cells = []
    for p_min in (0.05, 0.075, 0.10, 0.15, 0.20):
        for ch in (16, 32, 64, 128, 256):
            got = [_c1_instance(p_min, ch, s) for s in range(instances)]
            cells.append({"claim": "C1", "effect": p_min, "channels": ch, "images": 512, "instances": instances,
                          "power": got.count("holds") / instances})
        print(f"  c1 rarest {p_min:g}: " + " ".join(f"{c['power']:.2f}" for c in cells[-5:]), flush=True)
    return cells


def converted_c1_c3(old: dict) -> list[dict]:
    """The earlier C1/C3 runs (``responses``/``measures`` tables) as cells (their code is unchanged)."""
    cells = [{"claim": "C3", "effect": r["rho"], "channels": r["channels"], "images": r["images"],
              "instances": r["instances"], "power": r["power_c3"], "measured_rho": r["measured_rho"]}
             for r in old.get("responses", [])]
    cells += [{"claim": "C1", "effect": r["p_min"], "channels": r["channels"], "images": 512,
               "instances": r["instances"], "power": r["power_c1"]} for r in old.get("measures", [])]
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=40)
    ap.add_argument("--claims", default="scale,x1,c10", help="families to run: c1, c3, scale, scale60, x1, c10")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    old = json.loads(POWER.read_text()) if POWER.exists() else {}
    cells = old.get("cells") or converted_c1_c3(old)
    runners = {"c1": run_c1, "c3": run_c3, "scale": run_scale, "scale60": run_scale60, "x1": run_x1, "c10": run_c10}
    unknown = sorted(set(args.claims.split(",")) - set(runners))
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {sorted(runners)}")
    commands = dict(old.get("commands", {}))
    for fam in args.claims.split(","):
        many = fam in ("x1", "c10", "c1")  # cheap: at least 200 instances a cell
        new = runners[fam](max(args.instances, 200) if many else args.instances)
        done = {(c["claim"], c.get("config", "")) for c in new}
        cells = [c for c in cells if (c["claim"], c.get("config", "")) not in done] + new
        commands[fam] = f"python -m calibration.power --claims {fam} --instances {args.instances}" + \
            (f" (this family runs max(instances, 200) = {max(args.instances, 200)})" if many else "")
        POWER.write_text(json.dumps({"commands": commands, "cells": cells}, indent=1) + "\n")
    from calibration.report import power_markdown

    print(power_markdown({"cells": cells}))
    print(f"\npower: {time.perf_counter() - t0:.0f} s; written {POWER}")


if __name__ == "__main__":
    main()
