"""Teacher cost: cached stage time vs records size, and online vs cached cost per training sample.

    python benchmarks/teacher_cost.py [--folder models/teacher/smollm2] [--records data/records]
        [--scales 1 10] [--layer 2] [--online-batch 4] [--prefix 73] [--out /tmp/teacher_cost.json]

1. Cached mode: for each scale s, a records table holding every row s times (same distinct targets) is
   written to a scratch folder; the time to read the distinct targets and build the cache from scratch
   (fresh work folder) is measured. Forward passes = distinct targets + fields x states at every scale.
2. Online mode (the paper's): forward+backward of the full frozen LM on a soft prefix plus prompt and
   target JSON, per sample; vs the cached mode's per-sample lookup (target row + gather).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from vivid_med.fields import PRETRAIN_FIELDS
from vivid_med.tables import read_records, write_records
from vivid_med.teacher.cache import build_cache, distinct_targets, load_cache
from vivid_med.teacher.embed import Embedder
from vivid_med.teacher.load import load_teacher
from vivid_med.teacher.online import OnlineTeacherLoss


def cached_stage(folder: Path, records: list[Path], scale: int, layer: int, scratch: Path) -> dict:
    df = pd.concat([read_records(p) for p in records] * scale, ignore_index=True)
    path = scratch / f"x{scale}" / "records.parquet"
    write_records(df, path, PRETRAIN_FIELDS)
    t0 = time.perf_counter()
    targets = distinct_targets([path], PRETRAIN_FIELDS)
    t_read = time.perf_counter() - t0
    emb = Embedder(load_teacher(folder, layer=layer), "name_state", "chat", PRETRAIN_FIELDS)
    m = build_cache(emb, targets, scratch / f"x{scale}" / "out", scratch / f"x{scale}" / "work", progress=False)
    total = time.perf_counter() - t0
    return {"scale": scale, "rows": len(df), "distinct_targets": len(targets), "forward_passes": m["forward_passes"],
            "read_s": round(t_read, 2), "total_s": round(total, 1)}


def online_vs_cached(folder: Path, cache_dir: Path, targets: dict[str, str], batch: int, prefix_len: int,
                     steps: int = 3) -> dict:
    teacher = load_teacher(folder, head=True)
    loss_fn = OnlineTeacherLoss(teacher.model, teacher.tokenizer)
    cache = load_cache(cache_dir)
    hashes = list(targets)[:batch]
    texts = [targets[h] for h in hashes]
    prefix = torch.randn(batch, prefix_len, teacher.hidden_size, requires_grad=True)
    loss_fn(prefix, texts)["loss"].backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        loss_fn(prefix, texts)["loss"].backward()
    online = (time.perf_counter() - t0) / (steps * batch)
    t0 = time.perf_counter()
    for _ in range(1000):
        cache.targets[cache.target_rows(hashes)]
    cached = (time.perf_counter() - t0) / (1000 * batch)
    return {"online_ms_per_sample": round(online * 1e3, 1), "cached_ms_per_sample": round(cached * 1e3, 4),
            "ratio": round(online / cached), "prefix_tokens": prefix_len, "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=Path("models/teacher/smollm2"))
    ap.add_argument("--records", type=Path, default=Path("data/records"))
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("data/teacher/pretrained"))
    ap.add_argument("--online-batch", type=int, default=4)
    ap.add_argument("--prefix", type=int, default=73, help="soft prefix length (demo: 64 patches + CLS + 8 SPD)")
    ap.add_argument("--skip-stage", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    records = sorted(p for p in args.records.glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
    result: dict = {"stage": []}
    if not args.skip_stage:
        with tempfile.TemporaryDirectory() as tmp:
            for s in args.scales:
                result["stage"].append(cached_stage(args.folder, records, s, args.layer, Path(tmp)))
                print(json.dumps(result["stage"][-1]), flush=True)
    targets = distinct_targets(records, PRETRAIN_FIELDS)
    result["per_sample"] = online_vs_cached(args.folder, args.cache, targets, args.online_batch, args.prefix)
    print(json.dumps(result["per_sample"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
