"""How far the metrics move on another CPU: the tiny DAG under two sets of CPU kernels, compared value by value.

    python benchmarks/cross_cpu.py [--isa default avx2] [--out /tmp/cross_cpu.json]

A second machine of the same kind runs other vectorised kernels (e.g. AVX2 instead of AVX-512), so float sums come
out in another order. ATen chooses its kernels by ``ATEN_CPU_CAPABILITY``: each ISA named runs the tiny profile's
`dvc repro` in its own scratch copy, then every numeric value of every metrics file is compared across them. The
largest differences set the tolerance of tests/test_pipeline.py's cross-machine check (stated in docs/pipeline.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from pipeline import copy_repo, dvc, metric_files, numbers, value_kind  # noqa: E402


#: Tolerance = twice the largest difference measured between the two ISAs, at least this floor per kind of value
#: (AUC and F1 on the tiny profile's few test images move in coarse steps when one pair of scores swaps).
FLOOR = {"auc": 0.05, "f1": 0.05, "other": 1e-3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", nargs=2, default=["default", "avx2"])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--reference", type=Path, help="write the reference of tests/test_pipeline.py's check here")
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for isa in args.isa:
            os.environ["ATEN_CPU_CAPABILITY"] = isa
            repo = copy_repo(Path(tmp) / isa)
            dvc(repo, "repro")
            runs[isa] = {path: numbers(json.loads(data)) for path, data in metric_files(repo).items()}
    a, b = (runs[isa] for isa in args.isa)
    diffs = {f"{f}:{k}": abs(a[f][k] - b[f][k]) for f in a for k in a[f] if k in b.get(f, {})}
    moved = {k: d for k, d in diffs.items() if d > 0}
    by_kind = {}
    for key, d in moved.items():
        by_kind[value_kind(key)] = max(by_kind.get(value_kind(key), 0.0), d)
    res = {"isa": args.isa, "values": len(diffs), "values_moved": len(moved), "max_by_kind": by_kind,
           "largest": dict(sorted(moved.items(), key=lambda kv: -kv[1])[:15])}
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    if args.reference:  # the first ISA's metrics, with the tolerance the test applies per kind of value
        tolerance = {kind: max(2 * by_kind.get(kind, 0.0), FLOOR[kind]) for kind in FLOOR}
        ref = {"measured": {k: res[k] for k in ("isa", "values", "values_moved", "max_by_kind")},
               "tolerance": tolerance, "metrics": runs[args.isa[0]]}
        args.reference.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
