"""Stage ``pretrain@<run>``: train one backbone (``pretrain.common`` + ``pretrain.runs.<run>``) and export it.

Reads data/records/, data/images/ and, for objectives that need them, data/teacher/<variant>/ or
models/teacher/<name>/. Writes checkpoints/<run>/ (a killed run resumes from there), dvclive/<run>/ (the training
curve, step by step), models/<run>/, metrics/timing/pretrain_<run>.json and, last, metrics/pretrain/<run>.json.
Each output is replaced whole (a kill leaves the old one or the new one).

Processes: the runtime setting ``pretrain.processes`` (runtime.yaml; ``auto``, the default: one per CUDA GPU; an
integer forces that many, also on the CPU with gloo). With more than one the stage replaces itself with torchrun
(``--standalone``) running this same stage; every process trains its share of each batch (DDP), only rank 0
writes. bce's and vivid's losses are averaged per process, so their numbers move slightly with the count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from stages._params import fields, runtime, section
from vivid_med.io import write_json
from vivid_med.pretrain import PretrainParams, check_teacher, run
from vivid_med.runtime import PretrainRuntime, n_processes
from vivid_med.teacher.config import TeacherParams

METRICS, TIMING = Path("metrics/pretrain"), Path("metrics/timing")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a key of pretrain.runs in params.yaml")
    args = ap.parse_args(argv)
    params, teacher = section(PretrainParams, "pretrain"), section(TeacherParams, "teacher")
    check_teacher(params.resolve(args.run), teacher)  # a params mistake is reported once, before any process starts
    settings = runtime(PretrainRuntime, "pretrain")
    nproc = n_processes(settings.processes)
    gpus = torch.cuda.device_count()
    if gpus and nproc > gpus:
        raise SystemExit(f"runtime pretrain.processes: {nproc} processes but {gpus} CUDA GPU(s), one each "
                         "(CUDA_VISIBLE_DEVICES= runs them on the CPU)")
    if nproc > 1 and "LOCAL_RANK" not in os.environ:  # become torchrun (same pid: signals reach its workers)
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc-per-node={nproc}", "-m", "stages.pretrain", args.run])
    result = run(args.run, params, fields(), teacher, runtime=settings)
    if result is None:  # not rank 0
        return
    # wall-clock facts vary by machine: kept out of the metrics, which are written last
    write_json(TIMING / f"pretrain_{args.run}.json", result.timing, indent=2)
    write_json(METRICS / f"{args.run}.json", result.metrics, indent=2)
    print(f"pretrain {args.run}: {json.dumps({**result.metrics, **result.timing})}")


if __name__ == "__main__":
    main()
