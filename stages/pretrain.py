"""Stage ``pretrain@<run>``: train one backbone (``pretrain.common`` + ``pretrain.runs.<run>``) and export it.

Reads data/records/, data/images/ and, for objectives that need them, data/teacher/<variant>/ or
models/teacher/<name>/. Writes checkpoints/<run>/ (a killed run resumes from there), dvclive/<run>/ (the training
curve, step by step), models/<run>/, metrics/timing/pretrain_<run>.json and, last, metrics/pretrain/<run>.json.
Each output is replaced whole (a kill leaves the old one or the new one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages._params import fields, section
from vivid_med.io import write_json
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
    # wall-clock facts vary by machine: kept out of the metrics, which are written last
    write_json(TIMING / f"pretrain_{args.run}.json", result.timing, indent=2)
    write_json(METRICS / f"{args.run}.json", result.metrics, indent=2)
    print(f"pretrain {args.run}: {json.dumps({**result.metrics, **result.timing})}")


if __name__ == "__main__":
    main()
