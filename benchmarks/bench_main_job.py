"""The README's main job in plain-forward equivalents: how many forward passes of the model over
the same probe images the whole claims suite costs.

Times, in one run on this machine: (a) one plain torch forward pass of the model over the
main job's probe images (median of ``--repeats``), (b) the main job itself, as the README runs
it (``pytest --pyargs resstream_assert.suite --resstream-survey``, fresh cache, a subprocess),
then (a) again; prints the ratio main job / plain forward. The machine is shared and noisy: the
plain pass is timed before and after, and the ratio uses their median. ``--cpu`` measures CPU
seconds at one thread instead of wall seconds (both sides), which load from other jobs barely moves.

    PYTHONPATH=. python benchmarks/bench_main_job.py --cpu      # the default model, 512 images
    PYTHONPATH=. python benchmarks/bench_main_job.py --images 256 --extra=--resstream-claims=C1,C3

``--memory ARCH --memory-images N`` instead measures the peak RSS of capturing N embedded probe
images through a torchvision architecture (random weights) at 224 px, stored as the pipeline stores
them (float16, centre unit; ``--memory-storage float32 --memory-reducers center,mean`` for the old
way). A probe over 256 MB of pixels is rendered once to the cache directory and streamed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from resstream_assert.config import DEFAULT_MODEL


def plain_forward(spec: str, images: int, batch: int, repeats: int, cpu: bool = False) -> float:
    """Median seconds (CPU seconds with ``cpu``) of one plain forward pass over the probe (torch, eval)."""
    import torch

    from resstream_assert.capture.torch_fx import normalizer
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline, load_model

    loaded = load_model(spec)
    # the model's own probe, as the main job reads it (the shipped photographs for the natural-image model)
    probe = Pipeline(RunConfig(models=(spec,), images=images, progress=False)).model_probe(spec)
    norm = normalizer(loaded.mean, loaded.std, torch.device("cpu"))
    clock = time.process_time if cpu else time.perf_counter
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = clock()
            for batch_images in probe.batches(batch):
                loaded.module(norm(batch_images))
            times.append(clock() - start)
    return statistics.median(times)


def main_job(spec: str, images: int, extra: list[str], cpu: bool = False) -> tuple[float, str]:
    """Seconds (CPU seconds at one thread with ``cpu``) of the README's main job on ``spec`` (fresh cache), and its
    output."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if cpu:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RESSTREAM_ORT_THREADS="1")
    with tempfile.TemporaryDirectory() as cache:
        cmd = [sys.executable, "-m", "pytest", "--pyargs", "resstream_assert.suite", "--resstream-survey",
               "-p", "no:cacheprovider", "--resstream-cache-dir", cache, "--resstream-images", str(images), "--resstream-model", spec, *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        took = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) if cpu \
            else time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"main job failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    return took, out.stdout


def memory(arch: str, n: int, size: int, batch: int, storage: str = "float16", reducers=("center",)) -> None:
    """Peak RSS of capturing every site of ``arch`` over ``n`` embedded probe images at ``size`` px."""
    from resstream_assert.capture import capture
    from resstream_assert.discovery import discover
    from resstream_assert.pipeline import load_model
    from resstream_assert.stimuli.probe import load_probe

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loaded = load_model(f"torchvision:{arch}", input_size=size)
    rmap = discover(loaded)
    probe = load_probe(None, n, size)
    after_probe = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    resp = capture(loaded, rmap, probe, batch_size=batch, progress=False, storage=storage, reducers=reducers)["id"]
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from resstream_assert.capture.memory import LazyTable, identity

    tables = (resp.center, resp.mean)
    distinct = {identity(t, k): (t, k) for t in tables for k in t}  # read one at a time, after the peak
    nbytes = sum(t[k].nbytes for t, k in distinct.values())
    where = "on disk" if isinstance(resp.center, LazyTable) else "in memory"
    streamed = "streamed from disk" if isinstance(probe.images.base, np.memmap) else "in memory"
    print(f"{arch} at {size} px, {n} images: probe {probe.images.nbytes / 2**20:.0f} MiB ({streamed}), responses "
          f"{nbytes / 2**20:.0f} MiB {where} ({len(distinct)} distinct arrays, {storage}, {'+'.join(reducers)}), capture "
          f"{took:.1f} s; peak RSS {peak:.0f} MiB (start {before:.0f}, after loading model + probe {after_probe:.0f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"model spec (default: the main job's, {DEFAULT_MODEL})")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64, help="the main job's --resstream-batch-size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--extra", action="append", default=[], help="more pytest arguments for the main job")
    ap.add_argument("--memory", metavar="ARCH", help="measure peak RSS of a capture instead (e.g. resnet50)")
    ap.add_argument("--memory-images", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--memory-storage", default="float16", choices=("float16", "float32"))
    ap.add_argument("--memory-reducers", default="center", help="center or center,mean")
    ap.add_argument("--cpu", action="store_true", help="CPU seconds at one thread instead of wall seconds")
    args = ap.parse_args(argv)
    if args.memory:
        memory(args.memory, args.memory_images, args.size, args.batch, args.memory_storage,
               tuple(args.memory_reducers.split(",")))
        return 0
    if args.cpu:
        import torch

        torch.set_num_threads(1)
    first = plain_forward(args.model, args.images, args.batch, args.repeats, args.cpu)
    took, out = main_job(args.model, args.images, args.extra, args.cpu)
    second = plain_forward(args.model, args.images, args.batch, args.repeats, args.cpu)
    plain = statistics.median([first, second])
    for line in out.splitlines():
        if line.startswith("[resstream]") or " passed" in line:
            print("  " + line)
    unit = "CPU s at 1 thread" if args.cpu else "s"
    print(f"plain forward of {args.images} images: {first:.2f} {unit} before, {second:.2f} after; main job "
          f"{took:.1f} {unit} => {took / plain:.1f} plain-forward equivalents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
