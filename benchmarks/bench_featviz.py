"""Benchmark: feature visualization, ours vs torch-lucent 0.1.8 itself (the papers' tool), same process.

The papers' whole set: torchvision resnet18 at 224 px, the 7 analysed blocks (layer1.1 ...
layer4.1) x I, B, O x every channel = 5,568 module-channels, 2,560 Adam steps each. This
script times a stratified sample, every analysed block, in the same run, interleaved
(block by block, the order alternating each round, so a load change on a shared machine hits
both), and extrapolates both ways to the whole set:

- **lucent**: ``render_vis`` with ``objectives.neuron(module, c)``, ``param.image(224,
  decorrelate=True)``, Adam lr 0.05 and the papers' transforms for the block's jitter, one image
  at a time, on the module the papers hooked (I: the previous block or ``downsample.1``;
  B: ``bn2``; O: the block), a fresh model copy per image (lucent never removes its hooks);
- **ours**: :func:`optimize` on the block's I, B, O targets (one chunk, ``--batch``
  images), default settings (cut graph, receptive-field crop, pass-through ReLU),
  channels_last, the papers' per-layer jitter;
- **reference**: a plain forward pass of the whole model, no grad, over the same number of images.

Per-step cost is the steady state: the CPU time of each step after the first (lucent: inside
its optimizer step, which runs the whole closure; ours: between progress callbacks). With
``--device cuda`` steps are timed by the wall clock after a synchronize.

    PYTHONPATH=. nice python benchmarks/bench_featviz.py --threads 1 --steps 6 --per-site 4 --rounds 2 [--amp]

lucent 0.1.8 pins kornia<=0.4.1 and imports IPython: install it with
``pip install --no-deps torch-lucent==0.1.8 kornia==0.6.12 decorator`` (the ``benchmark`` extra).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import types

import numpy as np
import torch

from resstream_assert.discovery.torch_graph import block_nodes, trace
from resstream_assert.stimuli.featviz import FeatvizSettings, Target, optimize
from resstream_assert.stimuli.featviz_param import ANGLES, SCALES, paper_jitter

SITES = ("skip_out", "branch_out", "resid_sum")
PAPERS_STEPS = 2560


def import_lucent():
    """lucent 0.1.8 on a current stack: kornia's moved functions aliased, IPython.display stubbed if absent."""
    import kornia
    from kornia.geometry import transform as kgt

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kgt, name))
    try:
        import IPython.display  # noqa: F401
    except ImportError:  # lucent shows images in notebooks through it; never called here
        ip, disp = types.ModuleType("IPython"), types.ModuleType("IPython.display")
        disp.display = disp.HTML = lambda *a, **k: None
        ip.display = disp
        sys.modules.update({"IPython": ip, "IPython.display": disp})
    from lucent.optvis import objectives, param, render, transform

    return objectives, param, render, transform


class Clock:
    """CPU seconds (or wall seconds after a CUDA synchronize) of the steps after the first."""

    def __init__(self, cuda: bool):
        self.cuda, self.marks = cuda, []

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def mark(self, *_):
        self.marks.append(self.now())

    def steady(self) -> tuple[float, int]:
        """(seconds, steps) from the end of the first step to the end of the last."""
        return self.marks[-1] - self.marks[0], len(self.marks) - 1


def lucent_module(model, rmap_block, site: str, module_names: dict) -> str:
    """The module the papers hooked for a site of a block, in lucent's underscore naming."""
    nodes = {n.name: n for n in trace(model).gm.graph.nodes}
    node = nodes[getattr(block_nodes(model)[rmap_block], site)]
    if site == "branch_out":
        name = node.target
    elif site == "resid_sum":
        name = module_names[rmap_block]  # the block's output (post-ReLU), as the papers hooked it
    elif node.op == "call_module" and "downsample" in node.target:
        name = node.target
    else:
        name = module_names[rmap_block - 1]  # identity shortcut: the previous block's output
    return name.replace(".", "_")


def papers_transforms(transform, jitter: int, size: int):
    import torchvision.transforms as T

    scale_rotate = [transform.random_scale(list(SCALES)), transform.random_rotate(list(ANGLES))]
    if jitter < 4:
        return scale_rotate
    return [transform.pad(jitter), transform.jitter(jitter), *scale_rotate, transform.jitter(jitter // 2),
            T.CenterCrop(size)]


def time_lucent(lucent, model, layer: str, channel: int, jitter: int, size: int, steps: int, dev, seed: int):
    objectives, param, render, transform = lucent
    np.random.seed(seed)
    torch.manual_seed(seed)
    m = copy.deepcopy(model).to(dev).eval()
    clock = Clock(dev.type == "cuda")

    class TimedAdam(torch.optim.Adam):
        def step(self, closure=None):
            out = super().step(closure)
            clock.mark()
            return out

    render.render_vis(m, objectives.neuron(layer, channel), lambda: param.image(size, decorrelate=True),
                      optimizer=lambda p: TimedAdam(p, lr=0.05), transforms=papers_transforms(transform, jitter, size),
                      thresholds=(steps,), progress=False, show_image=False)
    return clock.steady()


def time_ours(loaded, targets, steps: int, dev: str, size: int, amp: bool = False):
    clock = Clock(dev.startswith("cuda"))
    settings = FeatvizSettings(steps=steps, batch_size=len(targets), channels_last=True, regime="per-layer",
                               device=dev, size=size, amp=amp)
    optimize(loaded.module, targets, settings, mean=loaded.mean, std=loaded.std, input_size=size,
             progress=clock.mark)
    seconds, n = clock.steady()
    return seconds, n * len(targets)


def reference(loaded, size: int, n: int, dev) -> float:
    """Seconds per image of a plain whole-model forward (no grad), batch ``n``."""
    model = loaded.module.to(dev).eval()
    x = torch.rand(n, 3, size, size, device=dev)
    clock = Clock(dev.type == "cuda")
    with torch.no_grad():
        for _ in range(3):
            model(x)
            clock.mark()
    seconds, k = clock.steady()
    return seconds / (k * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="torchvision:resnet18", help="a torchvision-style ResNet spec")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=6, help="steps per sample run (the first is not timed)")
    ap.add_argument("--per-site", type=int, default=4, help="our chunk per block: this many channels x I, B, O")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (order alternates)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-lucent", action="store_true", help="skip lucent (not installed)")
    ap.add_argument("--amp", action="store_true", help="also time ours with bf16 autocast (not the same numbers)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from resstream_assert.discovery import discover
    from resstream_assert.pipeline import load_model

    loaded, dev = load_model(args.model), torch.device(args.device)
    rmap = discover(loaded)
    names = {b.index: b.name for b in rmap}
    blocks = [b for b in rmap][1:]  # the papers never analyse the first block
    lucent = None if args.no_lucent else import_lucent()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.device}, {args.model} at "
          f"{args.size} px; {args.steps} steps per sample ({args.steps - 1} timed), {args.rounds} interleaved rounds")
    who_all = ["ours", "lucent"] + (["ours-bf16"] if args.amp else [])
    cost = {b.index: {k: [0.0, 0] for k in who_all} for b in blocks}
    for r in range(args.rounds):
        for b in blocks:
            chans = np.linspace(0, b.channels - 1, args.per_site).round().astype(int)
            targets = [Target(b.index, s, int(c), r) for s in SITES for c in chans]
            site, chan = SITES[(r + b.index) % 3], int(chans[r % len(chans)])
            jitter = paper_jitter(lucent_module(loaded.module, b.index, site, names).replace("_", ".")) or 0
            for who in who_all if r % 2 == 0 else who_all[::-1]:
                if who.startswith("ours"):
                    s, n = time_ours(loaded, targets, args.steps, args.device, args.size, who == "ours-bf16")
                elif lucent is not None:
                    layer = lucent_module(loaded.module, b.index, site, names)
                    s, n = time_lucent(lucent, loaded.module, layer, chan, jitter, args.size, args.steps, dev, r)
                else:
                    continue
                cost[b.index][who][0] += s
                cost[b.index][who][1] += n
    report(blocks, cost, reference(loaded, args.size, 3 * args.per_site, dev), args)


def report(blocks, cost, ref: float, args) -> None:
    unit = "wall-s" if args.device.startswith("cuda") else "CPU-s"
    bf16 = "ours-bf16" in cost[blocks[0].index]
    print(f"\n{'block':<10}{'module-ch':>10}{'ours ' + unit + '/img-step':>24}{'lucent':>12}{'ratio':>8}"
          + (f"{'ours bf16':>12}{'ratio':>8}" if bf16 else ""))
    total = {k: 0.0 for k in cost[blocks[0].index]}
    n_all = 0
    for b in blocks:
        n = 3 * b.channels
        n_all += n
        per = {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in cost[b.index].items()}
        for k in total:
            total[k] += n * PAPERS_STEPS * per[k]
        print(f"{b.name:<10}{n:>10}{per['ours']:>24.4f}{per['lucent']:>12.4f}{per['lucent'] / per['ours']:>7.1f}x"
              + (f"{per['ours-bf16']:>12.4f}{per['lucent'] / per['ours-bf16']:>7.1f}x" if bf16 else ""))
    print(f"\nthe papers' whole set: {n_all} module-channels x {PAPERS_STEPS} steps, extrapolated:")
    print(f"  ours   {total['ours']:>12.0f} {unit} ({total['ours'] / 3600:.1f} h)")
    print(f"  lucent {total['lucent']:>12.0f} {unit} ({total['lucent'] / 3600:.1f} h)")
    if bf16:
        print(f"  ours bf16 {total['ours-bf16']:>9.0f} {unit} ({total['ours-bf16'] / 3600:.1f} h)")
    print(f"RATIO lucent / ours, whole set: {total['lucent'] / total['ours']:.1f}x fewer {unit} (issue target >= 20x)")
    if bf16:
        print(f"RATIO lucent / ours with bf16 autocast (other numbers, within the amp test's tolerance): "
              f"{total['lucent'] / total['ours-bf16']:.1f}x")
    mean_ours = total["ours"] / (n_all * PAPERS_STEPS)
    print(f"reference: a plain whole-model forward (no grad) costs {ref:.4f} {unit} per image; an image-step of ours "
          f"costs {mean_ours / ref:.2f} such forwards on average over the set, lucent's "
          f"{total['lucent'] / (n_all * PAPERS_STEPS) / ref:.2f}")


if __name__ == "__main__":
    main()
