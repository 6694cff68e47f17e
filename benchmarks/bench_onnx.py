"""Benchmark: onnxruntime capture against a plain onnxruntime run and against PyTorch capture.

torchvision resnet18 (random weights, randomized BN), 224 x 224, batch 32, 256 images, CPU.
Times, each the median of ``--repeats`` runs, interleaved so that load from other processes
hits every variant alike:

  (a) plain onnxruntime run of the export (normalization included, as in capture)
  (b) ``capture_onnx``: all five sites of all 8 blocks, center + mean
  (c) ``capture_torch``: the same sites through the PyTorch backend
  (d) plain torch forward

Targets: (b)/(a) <= 1.15 and (b)/(c) < 1.

Run:  nice python benchmarks/bench_onnx.py [--repeats 3] [--images 256] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--arch", default="resnet18")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch
    import torchvision

    from resstream_assert.capture.onnx_runtime import capture_onnx
    from resstream_assert.loading.onnx_export import export_onnx
    from resstream_assert.loading.ort_session import ort_threads, plain_session
    from resstream_assert.capture.torch_fx import capture_torch, normalizer
    from resstream_assert.discovery.onnx_graph import discover_onnx
    from resstream_assert.discovery.torch_graph import discover_torch
    from resstream_assert import load_model
    from resstream_assert.loading import LoadedModel
    from resstream_assert.loading.random_weights import randomize_bn

    torch.manual_seed(0)
    module = randomize_bn(getattr(torchvision.models, args.arch)().eval(), 0)
    tl = LoadedModel(spec=f"torchvision:{args.arch}", name=args.arch, backend="torch", module=module,
                     input_size=args.size, num_classes=1000, digest="bench")
    tmap = discover_torch(tl, args.size)
    images = np.random.default_rng(0).random((args.images, 3, args.size, args.size), dtype=np.float32)
    batches = [images[i:i + args.batch] for i in range(0, args.images, args.batch)]

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(tl, Path(tmp) / f"{args.arch}.onnx")
        ol = load_model(str(path), providers=("CPUExecutionProvider",))
        omap = discover_onnx(ol)
        sess = plain_session(path, ol.digest, ol.onnx.providers)
        mean = np.asarray(ol.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(ol.std, np.float32).reshape(1, 3, 1, 1)
        norm = normalizer(tl.mean, tl.std, "cpu")

        def plain_ort():
            for b in batches:
                sess.run(None, {"input": (b - mean) / std})

        def cap_ort():
            capture_onnx(ol, omap, batches)

        def cap_torch():
            capture_torch(tl, tmap, batches)

        def plain_torch():
            with torch.inference_mode():
                for b in batches:
                    module(norm(b))

        runs = {"(a) plain onnxruntime": plain_ort, "(b) onnxruntime capture": cap_ort,
                "(c) torch capture": cap_torch, "(d) plain torch": plain_torch}
        for fn in runs.values():  # warm-up: sessions, traces, allocator arenas
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.arch} {args.size}x{args.size}, batch {args.batch}, {args.images} images, CPU; torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__} "
          f"({ort_threads()} threads); {len(omap)} blocks x 5 sites; median of {args.repeats}")
    for k, v in times.items():
        print(f"  {k:<26} {med[k]:7.3f} s   runs: {', '.join(f'{t:.3f}' for t in v)}")
    r1 = med["(b) onnxruntime capture"] / med["(a) plain onnxruntime"]
    r2 = med["(b) onnxruntime capture"] / med["(c) torch capture"]
    print(f"  capture / plain onnxruntime  = {r1:.3f}  (target <= 1.15)")
    print(f"  ORT capture / torch capture  = {r2:.3f}  (target < 1)")
    print(f"  torch capture / plain torch  = {med['(c) torch capture'] / med['(d) plain torch']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
