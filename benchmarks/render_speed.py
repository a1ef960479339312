"""Synthetic CXR rendering speed (images/s on one core): python benchmarks/render_speed.py [--size 128]."""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from vivid_med.demo.cxr import MIMIC_STYLE, NIH_STYLE, render_cxr  # noqa: E402
from vivid_med.fields import PRETRAIN_FIELDS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    for name, style in (("MIMIC_STYLE", MIMIC_STYLE), ("NIH_STYLE", NIH_STYLE)):
        for view in ("PA", "LATERAL"):
            rng = np.random.default_rng(0)
            jobs = [{f: bool(rng.random() < 0.2) for f in PRETRAIN_FIELDS} for _ in range(args.n)]
            t, cpu = time.perf_counter(), time.process_time()
            for findings in jobs:
                render_cxr(findings, rng, args.size, style, view)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            print(f"{name:12s} {view:8s} {args.size}px: {args.n / wall:7.1f} images/s wall, "
                  f"{args.n / cpu:7.1f} images/s per CPU-second")


if __name__ == "__main__":
    main()
