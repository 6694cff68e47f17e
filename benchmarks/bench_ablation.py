"""Benchmark: the C10 lesion run (head once per zoom, tail per lesion set) on a ResNet18 at 96 px.

With ``zoo:resnet18-synth96`` weights present, the whole hook runs as the orchestrator
calls it (capture of id/S/Sinv, measures, C10's lesion request, C10's statistics).
Without them, torchvision resnet18 (10 classes, randomized BN statistics) stands in: the
runner is timed directly on the pre-registered blocks with an S* of 18% of the channels
(the papers' 23/128 and 46/256), an anti set and N random sets, since a random net is at
chance and the hook would (correctly) stop before any lesion.

Also reported: forward passes (head and tail image-forwards and batch calls), the
equivalent cost in full forwards (one head + one tail image-forward = one full), and an
estimate of what full forwards with an edit would have cost.

Run:  nice python benchmarks/bench_ablation.py [--images 512] [--n-random 100] [--threads 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _full_forward_seconds(module, size: int, device: str, n: int = 256) -> float:
    import torch

    x = torch.randn(n, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        module.to(device)(x[:32])
        sync()
        t = time.perf_counter()
        module(x)
        sync()
    return (time.perf_counter() - t) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512, help="embedded probe size (7/8 of it labeled)")
    ap.add_argument("--n-random", type=int, default=100)
    ap.add_argument("--zooms", default="1,1.25,1.5,2")
    ap.add_argument("--batch", type=int, default=256, help="images per tail call")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="zoo:resnet18-synth96", help="model spec for the hook run")
    ap.add_argument("--stand-in", action="store_true", help="use the random resnet18 even if zoo weights exist")
    args = ap.parse_args(argv)

    import torch

    from resstream_assert import zoo as model_zoo
    from resstream_assert.interventions import lesion as L

    if args.threads:
        torch.set_num_threads(args.threads)
    zooms = tuple(float(z) for z in args.zooms.split(","))
    use_zoo = not args.stand_in
    if args.model.startswith("zoo:"):
        zoo = model_zoo.get(args.model[4:])
        use_zoo = use_zoo and zoo.weights_path.is_file() and zoo.sha256 is not None
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, zooms {zooms}, "
          f"N = {args.n_random}")
    counters: dict = {}
    if use_zoo:
        from resstream_assert.claims import REGISTRY, ClaimContext, ClaimOptions
        from resstream_assert.claims.ablation import evaluate_c10, plan_lesions
        from resstream_assert.config import RunConfig
        from resstream_assert.interventions import InterventionEnv
        from resstream_assert.pipeline import Pipeline

        spec = args.model
        wb = Pipeline(RunConfig(models=(spec,), images=args.images, progress=False, device=args.device))
        t0 = time.perf_counter()
        rmap = wb.map(spec)
        measures = wb.measures(spec, "torch", ("id", "S", "Sinv"))
        t1 = time.perf_counter()
        lesion = (("batch_size", args.batch), ("n_random", args.n_random), ("zooms", zooms))
        ctx = ClaimContext(model=spec, backend="torch", rmap=rmap, measures=measures, responses={},
                           options=ClaimOptions(lesion=lesion)).for_claim(REGISTRY["C10"])
        loaded = wb.model(spec)
        data = plan_lesions(ctx).run(InterventionEnv(loaded, rmap, wb.probe(loaded.input_size), device=args.device))
        t2 = time.perf_counter()
        res = evaluate_c10(ctx.for_claim(REGISTRY["C10"], data))
        t3 = time.perf_counter()
        counters = dict(data.forwards)
        module, size = wb.model(spec).module, wb.model(spec).input_size
        print(f"model {spec}: capture + measures {t1 - t0:.1f} s, lesions {t2 - t1:.1f} s, statistics {t3 - t2:.2f} s")
        print(f"C10: {res.verdict.value} ({res.reason})")
        for r in res.rows:
            print(f"  {r.block}: {r.note}; slope excess {r.effect:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}], "
                  f"p = {r.p_value:.3g}, gap at max zoom {r.values.get('gap_max_zoom', float('nan')):+.4f}")
        lesion_s = t2 - t1
    else:
        import torchvision

        from resstream_assert.discovery import discover
        from resstream_assert.loading import LoadedModel
        from resstream_assert.stimuli.probe import embedded_probe
        from resstream_assert.loading.random_weights import randomize_bn

        torch.manual_seed(0)
        module = randomize_bn(torchvision.models.resnet18(num_classes=10)).eval()
        size = 96
        loaded = LoadedModel(spec="stand-in", name="resnet18 (random, 96 px)", backend="torch", module=module,
                             input_size=size, num_classes=10, digest="x")
        rmap = discover(loaded)
        probe = embedded_probe(n=args.images, size=size).labeled()
        rng = np.random.default_rng(0)
        t1 = time.perf_counter()
        for block in L.default_ablation_blocks(rmap):
            k = round(0.1797 * block.channels)
            perm = rng.permutation(block.channels)
            sel, anti, pool = perm[:k], perm[k:2 * k], perm[k:]
            sets = [sel, anti] + [rng.choice(pool, k, replace=False) for _ in range(args.n_random)]
            tb = time.perf_counter()
            corr, intact, _, mode = L.lesion_correctness(loaded, rmap, block, probe.images, probe.labels, zooms, sets,
                                                         batch_size=args.batch, counters=counters, device=args.device)
            print(f"  {block.name}: {len(sets)} sets x {len(zooms)} zooms x {len(probe)} images, mode {mode}, "
                  f"{time.perf_counter() - tb:.1f} s")
        lesion_s = time.perf_counter() - t1
        print(f"stand-in torchvision resnet18 at {size} px (zoo weights absent): lesions {lesion_s:.1f} s")
    head, tail = counters.get("head_images", 0), counters.get("tail_images", 0)
    full = counters.get("full_images", 0)
    print(f"forwards: head {head} images in {counters.get('head_batches', 0)} calls, tail {tail} images in "
          f"{counters.get('tail_batches', 0)} calls, full (fallback) {full}")
    per_full = _full_forward_seconds(module, size, args.device)
    print(f"a full forward costs {per_full * 1e3:.2f} ms/image now; the same lesions by full forwards with an edit "
          f"would take about {(tail + full) * per_full:.0f} s (vs {lesion_s:.0f} s measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
