"""Stage ``pretrain@<run>``: train one backbone (``pretrain.common`` + ``pretrain.runs.<run>``) and export it.

Reads data/records/, data/images/ and, for objectives that need them, data/teacher/<variant>/ or
models/teacher/<name>/. Writes models/<run>/, checkpoints/<run>/ (a killed run resumes from there),
metrics/pretrain/<run>.json, metrics/pretrain/<run>_curve.csv and metrics/timing/pretrain_<run>.json.
Multi-GPU / multi-node: ``torchrun --nproc-per-node N -m stages.pretrain <run>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages._params import fields, section
from vivid_med.pretrain import PretrainParams, run
from vivid_med.teacher.config import TeacherParams

METRICS, TIMING = Path("metrics/pretrain"), Path("metrics/timing")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a key of pretrain.runs in params.yaml")
    args = ap.parse_args(argv)
    params, teacher = section(PretrainParams, "pretrain"), section(TeacherParams, "teacher")
    result = run(args.run, params, fields(), teacher)
    if result is None:  # not rank 0
        return
    METRICS.mkdir(parents=True, exist_ok=True)
    (METRICS / f"{args.run}.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    TIMING.mkdir(parents=True, exist_ok=True)  # wall-clock facts vary by machine: kept out of the metrics
    (TIMING / f"pretrain_{args.run}.json").write_text(json.dumps(result.timing, indent=2) + "\n")
    curve = METRICS / f"{args.run}_curve.csv"
    if not curve.exists():  # a run of 0 steps still has its (empty) plot file
        curve.write_text("step,loss\n")
    print(f"pretrain {args.run}: {json.dumps({**result.metrics, **result.timing})}")


if __name__ == "__main__":
    main()
