"""C10 on lesion outcomes: a generator of per-image correctness with a planted excess, the sequential
test run as the lesion runner runs it, and recorded lesion outcomes of a zoo model.

- :func:`synthetic_lesions`: ``intact`` (Z, n), ``selected`` (Z, n) and ``random`` (N, Z, n)
  correctness under a null in which S* is one more random set (``excess=0``) or damages
  ``excess`` more per unit zoom. Every set draws its own baseline damage and zoom damage, so
  the sets differ as real channel sets do.
- :func:`sequential_run`: the random sets the runner would have run under Besag-Clifford with
  ``h``, and the test on them (what ``evaluate_c10`` reads).
- :func:`recorded_power` (``python -m calibration.lesions power``): on the recording, the power of
  the defaults against N = 100 / four zooms at the model's own effect (paired image bootstrap).
- :func:`load_recorded` / ``record`` (``python -m calibration.lesions record [--model M --out F.npz]``):
  per-image correctness of every random set at four zooms on a zoo model (default ``zoo:resnet18-synth96``;
  ``c10_recorded_cifar64.npz`` holds the natural-image model's), S* picked on one
  half of the probe images and scored on the other, so that the N = 40 / 2-zoom defaults can be
  compared with N = 100 / 4 zooms on a real model without running it again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from resstream_assert.claims.ablation import SlopeExceedances, lesion_test

RECORDED = Path(__file__).parent / "results" / "c10_recorded.npz"


def synthetic_lesions(seed: int, *, excess: float = 0.0, n_images: int = 256, n_random: int = 40,
                      zooms=(1.0, 2.0), base_harm=(0.03, 0.09), zoom_harm=(0.0, 0.04)):
    """Per-image correctness ``(intact, selected, random)`` with S* damaging ``excess`` more per unit zoom.

    Example:
        >>> i, s, r = synthetic_lesions(0, n_images=50, n_random=5)
        >>> i.shape, s.shape, r.shape
        ((2, 50), (2, 50), (5, 2, 50))
    """
    rng = np.random.default_rng([seed, 41])
    z = np.asarray(zooms, float)
    base = rng.random(n_images) < 0.85
    intact = np.stack([base & (rng.random(n_images) > 0.05 * (zz - 1)) for zz in z])

    def lesion(extra: float) -> np.ndarray:
        hurt = rng.uniform(*base_harm) + (rng.uniform(*zoom_harm) + extra) * (z - 1)
        return intact & ~(rng.random((len(z), n_images)) < np.clip(hurt, 0, 1)[:, None])

    selected = lesion(excess)
    return intact, selected, np.stack([lesion(0.0) for _ in range(n_random)])


def sequential_run(zooms, intact: np.ndarray, selected: np.ndarray, random: np.ndarray, h: int, **kw):
    """The test as the runner gives it with Besag-Clifford ``h`` over ``len(random)`` planned sets:
    ``(test, sets that ran)``; ``h = 0`` runs them all (the fixed test).

    Example:
        >>> i, s, r = synthetic_lesions(1, n_images=100)
        >>> sequential_run((1.0, 2.0), i, s, r, 2, n_boot=0)[1] <= 40
        True
    """
    n_max = len(random)
    n_run = n_max
    if h:
        exceed = SlopeExceedances.exceed(zooms, intact, selected, random)
        hits = np.cumsum(exceed)
        n_run = int(np.argmax(hits >= h)) + 1 if hits[-1] >= h else n_max
    test, _, _ = lesion_test(zooms, intact, selected, random[:max(n_run, 2)], n_max=n_max, sequential=h, **kw)
    return test, n_run


def load_recorded(path: Path = RECORDED) -> dict:
    """The recorded zoo lesion outcomes: per block ``intact`` (Z, n), ``selected`` (Z, n), ``random`` (N, Z, n),
    with ``zooms``; bool arrays unpacked."""
    with np.load(path, allow_pickle=False) as f:
        zooms = f["zooms"]
        out = {"zooms": zooms, "blocks": [str(b) for b in f["blocks"]],
               # recordings made before the model was stored are of the zoo model named in the module docstring
               "model": str(f["model"]) if "model" in f else "zoo:resnet18-synth96"}
        for b in out["blocks"]:
            shape = tuple(f[f"{b}/shape"])
            n = int(np.prod(shape))
            bits = np.unpackbits(f[f"{b}/bits"])[:n].astype(bool).reshape(shape)  # (2 + N, Z, n)
            out[b] = {"intact": bits[0], "selected": bits[1], "random": bits[2:]}
        return out


def record(model: str, images: int, n_random: int, out: Path) -> None:
    """Run C10's lesions with every random set at four zooms and store the per-image outcomes."""
    import torch

    from resstream_assert.claims import REGISTRY, ClaimOptions
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    torch.set_num_threads(1)
    zooms = (1.0, 1.25, 1.5, 2.0)
    opts = ClaimOptions(lesion=(("n_random", n_random), ("sequential", 0), ("zooms", zooms)))
    pipe = Pipeline(RunConfig(models=(model,), images=images, progress=False))
    ctx = pipe.context(model, claims=["C10"], options=opts)
    data = pipe.intervention(model, "torch", REGISTRY["C10"].prepare(ctx.for_claim(REGISTRY["C10"])))
    arrays = {"zooms": np.asarray(data.zooms), "blocks": np.array([bl.block for bl in data.blocks if not bl.note]),
              "model": np.array(model)}
    for bl in data.blocks:
        if bl.note:
            continue
        stack = np.concatenate([bl.correct_intact[None], bl.correct_selected[None], bl.correct_random])
        arrays[f"{bl.block}/shape"] = np.array(stack.shape)
        arrays[f"{bl.block}/bits"] = np.packbits(stack.ravel())
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"recorded {', '.join(arrays['blocks'])}: {n_random} random sets x {len(zooms)} zooms x "
          f"{len(data.labels)} images -> {out}")


def recorded_power(rec: dict, n_boot: int = 200, alpha: float = 0.05) -> list[dict]:
    """On the recorded outcomes, per block and configuration: the p-value on all scored images, and over
    ``n_boot`` paired image-bootstrap resamples the share with p < alpha (the power at the model's own effect),
    with the random sets run (the cost). Also the correlation, over the random sets, of the four-zoom slope
    with ΔD(2)."""
    from resstream_assert.claims.ablation import delta_d_slopes

    z = tuple(float(v) for v in rec["zooms"])
    configs = {"defaults: N=40, h=2, zooms 1,2": (40, 2, (1.0, 2.0)),
               "before: N=100, h=10, zooms 1,1.25,1.5,2": (100, 10, z)}
    rows = []
    for block in rec["blocks"]:
        d = rec[block]
        n_img = d["intact"].shape[-1]
        four = delta_d_slopes(z, d["intact"], d["random"])
        two = delta_d_slopes((1.0, 2.0), d["intact"][[0, -1]], d["random"][:, [0, -1]])
        for label, (n, h, zooms) in configs.items():
            keep = [z.index(v) for v in zooms]
            pick = lambda idx: (d["intact"][keep][:, idx], d["selected"][keep][:, idx],  # noqa: E731
                                d["random"][:n][:, keep][:, :, idx])
            test, ran = sequential_run(zooms, *pick(np.arange(n_img)), h, n_boot=1000, rng=0)
            gen = np.random.default_rng(0)
            boots = [sequential_run(zooms, *pick(gen.integers(0, n_img, n_img)), h, n_boot=0)
                     for _ in range(n_boot)]
            rows.append({"block": block, "config": label, "images": n_img, "p": test.p_value,
                         "excess": test.effect, "ci_low": test.ci_low, "ci_high": test.ci_high, "sets_run": ran,
                         "power": float(np.mean([t.p_value < alpha for t, _ in boots])),
                         "mean_sets_run": float(np.mean([r for _, r in boots])),
                         "tail_forwards": float(np.mean([r for _, r in boots])) * len(zooms) * n_img,
                         "corr_four_zoom_slope_vs_dD2": float(np.corrcoef(four, two)[0, 1])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("record", "power"))
    ap.add_argument("--model", default="zoo:resnet18-synth96")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--n-random", type=int, default=100)
    ap.add_argument("--out", default=str(RECORDED))
    args = ap.parse_args()
    if args.what == "record":
        record(args.model, args.images, args.n_random, Path(args.out))
        return
    rec = load_recorded(Path(args.out))
    rows = recorded_power(rec)
    out = Path(args.out).with_name(Path(args.out).stem + "_power.json")  # c10_recorded.npz -> c10_recorded_power.json
    import json

    command = "python -m calibration.lesions power" + ("" if Path(args.out) == RECORDED else f" --out {args.out}")
    out.write_text(json.dumps({"command": command, "model": rec["model"], "rows": rows}, indent=1) + "\n")
    for r in rows:
        print(f"{r['block']} {r['config']}: p {r['p']:.3g} (sets run {r['sets_run']}), excess {r['excess']:+.3f} "
              f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], power {r['power']:.2f}, mean sets run "
              f"{r['mean_sets_run']:.1f}, corr(4-zoom slope, ΔD(2)) {r['corr_four_zoom_slope_vs_dD2']:.3f}")


if __name__ == "__main__":
    main()
