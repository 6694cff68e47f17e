"""float16 response storage against float32 on the zoo models: M, categories, S* and every verdict.

    PYTHONPATH=. python benchmarks/check_storage.py [--models zoo:resnet18-synth96,...] [--images 512]

Each model is captured once in float32 (every variant the claims read); the responses under
``--resstream-storage auto`` (id float32, transformed variants float16) and ``float16`` (all) are the
same arrays stored as the capture stores them (:func:`resstream_assert.capture.responses.compact`).
Both go through the measures and the claims that read responses (C1-C9); the P2 selection (C10's S*)
is compared too (C10's lesions run the model, not the stored responses).
Prints, per model: the largest relative difference of M (P1 and P2, channels defined in both), the
channels whose category or P2 selection differs, and the claims whose verdict differs; writes
``benchmarks/results/storage.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from resstream_assert.capture import storage_groups
from resstream_assert.capture.responses import compact
from resstream_assert.claims import ClaimOptions, needed_variants
from resstream_assert.claims.verdict_stability import evaluate_responses
from resstream_assert.config import RunConfig
from resstream_assert.measures import MeasureOptions, measure_all, p2_selected
from resstream_assert.pipeline import Pipeline

CLAIMS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
ZOO = ("zoo:cifar-resnet20-synth32", "zoo:bottleneck-synth64", "zoo:resnet18-synth96")


def stored(resp: dict, storage: str) -> dict:
    """Every variant's arrays as a capture under ``storage`` keeps them (shared arrays stay shared)."""
    policy = dict((v, st) for st, group in storage_groups(list(resp), storage) for v in group)
    done: dict[int, np.ndarray] = {}

    def keep(a: np.ndarray, st: str) -> np.ndarray:
        return done[id(a)] if id(a) in done else done.setdefault(id(a), compact(a, st))

    return {v: replace(r, center={k: keep(a, policy[v]) for k, a in r.center.items()},
                       mean={k: keep(a, policy[v]) for k, a in r.mean.items()}) for v, r in resp.items()}


def compare(model: str, images: int, cache_dir: str | None, storage: str) -> dict:
    pipe = Pipeline(RunConfig(models=(model,), images=images, progress=False, storage="float32", cache_dir=cache_dir))
    rmap = pipe.map(model)
    resp32 = pipe.responses(model, needed_variants(CLAIMS + ["C10"]))
    resp16 = stored(resp32, storage)
    ms = [measure_all(rmap, r, MeasureOptions()) for r in (resp32, resp16)]
    rel, cat_diff, sel_diff = [], 0, 0
    for a, b in zip(*ms):
        for conv in ("p1", "p2"):
            ma, mb = a.mix_ratio(conv), b.mix_ratio(conv)
            ok = np.isfinite(ma) & np.isfinite(mb)
            rel.append(np.abs(mb[ok] - ma[ok]) / np.abs(ma[ok]).clip(1e-12))
            cat_diff += int((a.category(conv) != b.category(conv)).sum())
        sel_diff += int((p2_selected(a) != p2_selected(b)).sum())
    opts = ClaimOptions(n_boot=0)
    res = [evaluate_responses(rmap, r, CLAIMS, options=opts, seed=0) for r in (resp32, resp16)]
    verdicts = {c: (res[0][c].verdict.value, res[1][c].verdict.value) for c in CLAIMS}
    nbytes = [sum(x.nbytes for x in {id(a): a for r in rr.values() for a in r.center.values()}.values())
              for rr in (resp32, resp16)]
    rel = np.concatenate(rel)
    return {"model": model, "storage": storage, "images": images, "m_max_rel_diff": float(rel.max()), "m_defined": int(rel.size),
            "m_median_rel_diff": float(np.median(rel)), "m_p99_rel_diff": float(np.percentile(rel, 99)),
            "m_moved_over_1pct": int((rel > 0.01).sum()),
            "category_changes": cat_diff, "p2_selection_changes": sel_diff, "verdicts": verdicts,
            "verdicts_changed": [c for c, (x, y) in verdicts.items() if x != y], "bytes_float32": nbytes[0],
            "bytes_float16": nbytes[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    for model, storage in [(m, st) for m in args.models.split(",") for st in ("auto", "float16")]:
        r = compare(model, args.images, args.cache_dir, storage)
        rows.append(r)
        print(f"{model} [{storage}]: M relative difference median {r['m_median_rel_diff']:.1e}, 99th percentile "
              f"{r['m_p99_rel_diff']:.1e}, max {r['m_max_rel_diff']:.2g} ({r['m_moved_over_1pct']} of {r['m_defined']} "
              "defined values moved > 1%: near-tied exemplars reordered by float16 rounding); "
              f"{r['category_changes']} category and {r['p2_selection_changes']} S* changes; verdicts changed: "
              f"{r['verdicts_changed'] or 'none'}; responses {r['bytes_float32'] / 2**20:.1f} -> "
              f"{r['bytes_float16'] / 2**20:.1f} MiB", flush=True)
    out = Path(__file__).parent / "results" / "storage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
