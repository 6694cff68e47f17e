"""How often the baseline gate passes an equivalent run, and fails a model whose claims changed.

The same checkpoint is captured once on a large probe pool; a baseline is evaluated on one
random subset of it (seed 0), then ``--runs`` more runs each take another random subset and
another seed (equivalent runs: only noise differs). Each is compared with the baseline by the
gate's own rules (:func:`resstream_assert.gate.baseline.compare` with ``gate_rules()``, its
noise model included). The same is done for a changed model (``--change``: ``gains`` re-draws
the BatchNorm gammas of every branch's last BN, so the branch gains no longer follow M; ``perm``
is NC-perm), whose runs are compared with the original's baseline. Claims: those that read
responses only (C1-C9; C10 and C11 re-run the model).

    PYTHONPATH=. python benchmarks/bench_gate_noise.py --model zoo:cifar-resnet20-synth32 --runs 20

Prints, per side, how many of the runs pass the gate, and which claims drove the failures.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import Counter

import numpy as np
import torch


def capture_pool(loaded, pool: int, probe_name: str | None):
    from resstream_assert.capture import capture
    from resstream_assert.claims import needed_variants
    from resstream_assert.claims.verdict_stability import response_claims
    from resstream_assert.discovery import discover
    from resstream_assert.stimuli.probe import load_probe

    rmap = discover(loaded)
    probe = load_probe(probe_name, pool, loaded.input_size)
    ids = response_claims()
    responses = capture(loaded, rmap, probe, variants=needed_variants(ids), progress=False)
    return rmap, responses, ids


def evaluate(rmap, responses, ids, n: int, seed: int, model: str) -> dict:
    """One run's report (JSON form) on a random ``n``-image subset with seed ``seed``."""
    from resstream_assert.claims.verdict_stability import evaluate_responses

    pool = responses["id"].n_images
    rows = np.sort(np.random.default_rng(10_000 + seed).choice(pool, size=n, replace=False))
    sub = {v: r.subset(rows) for v, r in responses.items()}
    results = evaluate_responses(rmap, sub, ids, seed=seed, model=model)
    return {"results": [r.to_dict() for r in results.values()]}


def changed(loaded, how: str, seed: int = 1):
    """A copy of the model whose claims really changed."""
    from resstream_assert.discovery import discover

    if how == "perm":
        from resstream_assert.pipeline import load_model
        return load_model(loaded.spec + "+nc-perm", input_size=loaded.input_size)
    out = loaded.with_(module=copy.deepcopy(loaded.module))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in discover(loaded):
            if block.gain_source:
                bn = out.module.get_submodule(block.gain_source)
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 1.5 + 0.1)
    return out.with_(digest=loaded.digest + f"+gains{seed}")


def gate(baseline: dict, report: dict) -> tuple[bool, list[str]]:
    from resstream_assert.gate.baseline import compare
    from resstream_assert.gate.rules import gate_rules

    diff = compare(baseline, report, gate_rules())
    failed_claims = sorted({e.claim for e in diff.failures()})
    return not diff.failed, failed_claims


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="zoo:cifar-resnet20-synth32")
    p.add_argument("--probe", default=None, help="probe set (default: the model's own)")
    p.add_argument("--pool", type=int, default=1000, help="probe images captured once")
    p.add_argument("--images", type=int, default=512, help="images per run (a random subset of the pool)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--change", default="gains", choices=("gains", "perm"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the per-run outcomes here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline, load_model

    probe = args.probe or Pipeline(RunConfig(models=(args.model,))).probe_source(args.model)
    loaded = load_model(args.model)
    rmap, responses, ids = capture_pool(loaded, args.pool, probe)
    baseline = evaluate(rmap, responses, ids, args.images, 0, args.model)
    out = {"model": args.model, "claims": ids, "baseline": {r["claim"]: r["verdict"] for r in baseline["results"]}}
    for side, model in (("equivalent", loaded), (f"changed ({args.change})", changed(loaded, args.change))):
        if model is not loaded:
            rmap, responses, _ = capture_pool(model, args.pool, probe)
        passes, culprits, verdicts = 0, Counter(), []
        for run in range(1, args.runs + 1):
            report = evaluate(rmap, responses, ids, args.images, run, args.model)
            ok, claims = gate(baseline, report)
            passes += ok
            culprits.update(claims)
            verdicts.append({r["claim"]: r["verdict"] for r in report["results"]})
            print(f"{side} run {run}: {'pass' if ok else 'FAIL ' + ','.join(claims)}", file=sys.stderr, flush=True)
        out[side] = {"passes": passes, "runs": args.runs, "failing_claims": dict(culprits), "verdicts": verdicts}
        print(f"{side}: the gate passes {passes} of {args.runs} runs; failing claims {dict(culprits)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
