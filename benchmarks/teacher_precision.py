"""Teacher cache precision: float64 vs float32 cost, and whether two CPU code paths give the same cache.

    python benchmarks/teacher_precision.py --folder models/teacher/smollm2 [--layer 2] [--targets 300]
        [--repeats 3] [--out /tmp/teacher_precision.json]

1. Cost: the same distinct targets embedded by the params' teacher (built to ``--layer``) in float32 and in
   float64, alternating, ``--repeats`` times; targets/s of each and the ratio (the float64 price).
2. Same bytes on another CPU: each dtype embeds the targets in two processes that use different ATen CPU kernels
   (ATEN_CPU_CAPABILITY=default, the scalar path, vs avx2), as two machines would; the share of embedding values
   that differ after rounding to float32, and the largest difference.
Targets are random UMS target JSONs over the pretraining fields (seeded), like the demo's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vivid_med.fields import PRETRAIN_FIELDS
from vivid_med.states import STATE_VALUES
from vivid_med.ums import cxr_record, provenance, target_text

_EMBED = """
import sys, numpy as np
from pathlib import Path
sys.path.insert(0, {bench!r})
from teacher_precision import embed
np.save(sys.argv[4], embed(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[5])).numpy())
"""


def targets(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        states = {f: rng.choice([None, None, *STATE_VALUES]) for f in PRETRAIN_FIELDS}
        out.add(target_text(cxr_record(states, rng.choice(["PA", "AP", None]), provenance())))
    return sorted(out)


def embed(folder: Path, layer: int, dtype: str, n: int):
    """float32 [n, D]: the targets embedded by the teacher in ``dtype``, rounded to float32 (what the cache stores)."""
    from vivid_med.teacher.embed import Embedder
    from vivid_med.teacher.load import load_teacher

    emb = Embedder(load_teacher(folder, layer=layer, dtype=dtype), "name_state", "chat", PRETRAIN_FIELDS)
    return emb.embed(targets(n), batch_size=16).float()


def cost(folder: Path, layer: int, n: int, repeats: int) -> dict:
    rates: dict[str, list[float]] = {"float32": [], "float64": []}
    for _ in range(repeats):
        for dtype in rates:
            t0 = time.perf_counter()
            embed(folder, layer, dtype, n)
            rates[dtype].append(n / (time.perf_counter() - t0))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {"targets_per_s": med, "runs": rates, "float64_time_ratio": med["float32"] / med["float64"]}


def cross_cpu(folder: Path, layer: int, n: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float64"):
            arrays = []
            for isa in ("default", "avx2"):
                path = Path(tmp) / f"{dtype}_{isa}.npy"
                env = {**os.environ, "ATEN_CPU_CAPABILITY": isa}
                script = _EMBED.format(bench=str(Path(__file__).parent))
                subprocess.run([sys.executable, "-c", script, str(folder), str(layer), dtype, str(path), str(n)],
                               env=env, check=True, capture_output=True)
                arrays.append(np.load(path))
            a, b = arrays
            out[dtype] = {"share_of_values_differing": float((a != b).mean()),
                          "max_abs_difference": float(np.abs(a - b).max()), "bytes_identical": bool((a == b).all())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("models/teacher/smollm2"))
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--targets", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    res = {"teacher": str(args.folder), "layer": args.layer, "n_targets": args.targets,
           "load_average": os.getloadavg(), "cost": cost(args.folder, args.layer, args.targets, args.repeats),
           "cross_cpu": cross_cpu(args.folder, args.layer, min(args.targets, 100))}
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
