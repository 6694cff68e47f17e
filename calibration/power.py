"""Power of C1 and C3: the fraction of planted-effect instances in which the claim holds.

    PYTHONPATH=. python -m calibration.power [--instances 100] [--jobs 2]

Synthetic responses (:mod:`calibration.synthetic`, ResNet18 layout: 7 analysed blocks, 4 of them
identity blocks, every block with the same number of channels) go through ``measure_all`` and
the claims with their default thresholds (alpha 0.05, Holm across blocks, C1 needs 4 of 7 blocks,
C3 all 4 identity blocks). Effect sizes:

- C3: ``rho``, the population Spearman correlation between M and the branch gain (planted by a
  Gaussian copula; the measured rho is attenuated by the noise of M, shown beside the power);
- C1: the share of the rarest category. On synthetic responses it follows from the spread of the
  branch scales (``log_scale_sd`` 0.4 gives about 14% overwrite channels); on synthetic measures it is set
  exactly (``p_min``), with the other two categories sharing the rest.

Prints Markdown tables and writes ``calibration/results/power.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from calibration.synthetic import Effects, spectrum_context, synthetic_responses
from resstream_assert.claims import REGISTRY, ClaimOptions
from resstream_assert.claims.verdict_stability import evaluate_responses

RESULTS = Path(__file__).parent / "results"
SPREAD = 0.4  # log_scale_sd of the response-level grid (rarest category about 14%)


def _response_instance(args: tuple) -> tuple[str, str, float, float]:
    rho, channels, images, seed = args
    rmap, resp = synthetic_responses(seed, n_images=images, channels=channels,
                                     effects=Effects(gain_rho=rho, log_scale_sd=SPREAD))
    out = evaluate_responses(rmap, resp, ["C1", "C3"], options=ClaimOptions(n_boot=0), seed=seed)
    rare = min(np.nanmean([r.values.get(f"frac_{k}", np.nan) for r in out["C1"].rows])
               for k in ("skip", "mix", "overwrite"))
    return out["C1"].verdict.value, out["C3"].verdict.value, float(out["C3"].effect), float(rare)


def _measure_instance(args: tuple) -> str:
    p_min, channels, seed = args
    rng = np.random.default_rng([seed, 5])
    rare = rng.integers(3)
    probs = tuple(p_min if i == rare else (1 - p_min) / 2 for i in range(3))
    ctx = spectrum_context(seed, [probs] * 7, channels=channels, options=ClaimOptions(n_boot=0))
    return REGISTRY["C1"].evaluate(ctx.for_claim(REGISTRY["C1"])).verdict.value


def _map(pool, fn, items: list) -> list:
    return list(pool.map(fn, items, chunksize=4)) if pool else [fn(x) for x in items]


def _cells(rhos, channels, images) -> list[tuple[float, int, int]]:
    return [(r, c, n) for r in rhos for c in channels for n in images]


def run(instances: int, jobs: int) -> dict:
    """Every grid cell: power (fraction holding) of C3 and C1, the mean measured rho, and C1 on measures."""
    cells = sorted(set(_cells((-0.2, -0.3, -0.4, -0.5), (32, 64, 128, 256), (512,))
                       + _cells((-0.3,), (32, 64, 128, 256), (128, 2000))), key=lambda c: (c[2], c[0], c[1]))
    pool = ProcessPoolExecutor(jobs) if jobs > 1 else None
    rows, spectrum = [], []
    try:
        for rho, ch, n in cells:
            t0 = time.perf_counter()
            items = [(rho, ch, n, i) for i in range(instances)]
            got = _map(pool, _response_instance, items)
            rows.append({"rho": rho, "channels": ch, "images": n, "instances": instances,
                         "power_c3": sum(g[1] == "holds" for g in got) / instances,
                         "measured_rho": float(np.nanmean([g[2] for g in got])),
                         "power_c1": sum(g[0] == "holds" for g in got) / instances,
                         "rarest_share": float(np.nanmean([g[3] for g in got]))})
            print(f"  rho {rho} ch {ch} img {n}: C3 {rows[-1]['power_c3']:.2f} C1 {rows[-1]['power_c1']:.2f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for p_min in (0.075, 0.10, 0.15, 0.20):
            for ch in (16, 32, 64, 128, 256):
                items = [(p_min, ch, i) for i in range(instances)]
                got = _map(pool, _measure_instance, items)
                spectrum.append({"p_min": p_min, "channels": ch, "instances": instances,
                                 "power_c1": sum(g == "holds" for g in got) / instances})
    finally:
        if pool:
            pool.shutdown()
    return {"responses": rows, "measures": spectrum}


def _grid(rows: list[dict], row_key: str, col_key: str, value: str, fmt="{:.2f}") -> str:
    rs, cs = sorted({r[row_key] for r in rows}), sorted({r[col_key] for r in rows})
    cell = {(r[row_key], r[col_key]): r[value] for r in rows}
    out = [f"| {row_key} \\ {col_key} | " + " | ".join(str(c) for c in cs) + " |", "|---|" + "---:|" * len(cs)]
    for rv in rs:
        out.append(f"| {rv} | " + " | ".join(fmt.format(cell[(rv, c)]) if (rv, c) in cell else "" for c in cs) + " |")
    return "\n".join(out)


def markdown(result: dict) -> str:
    """The power tables in Markdown."""
    resp = result["responses"]
    at512 = [r for r in resp if r["images"] == 512]
    at03 = [r for r in resp if r["rho"] == -0.3]
    return "\n\n".join([
        "C3 power at 512 images (rows: planted rho; columns: channels per block)",
        _grid(at512, "rho", "channels", "power_c3"),
        "C3 mean measured rho at 512 images", _grid(at512, "rho", "channels", "measured_rho", "{:+.2f}"),
        "C3 power at rho = -0.3 (rows: probe images; columns: channels per block)",
        _grid(at03, "images", "channels", "power_c3"),
        f"C1 power on synthetic responses (rarest category about "
        f"{np.mean([r['rarest_share'] for r in resp]):.0%}; rows: probe images)",
        _grid(at03, "images", "channels", "power_c1"),
        "C1 power on synthetic measures (rows: share of the rarest category)",
        _grid(result["measures"], "p_min", "channels", "power_c1")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "power.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = run(args.instances, args.jobs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": vars(args), "wall_s": round(time.perf_counter() - t0, 1), **result},
                              indent=1) + "\n")
    print(markdown(result))
    print(f"\npower: {time.perf_counter() - t0:.0f} s; written {out}")


if __name__ == "__main__":
    main()
