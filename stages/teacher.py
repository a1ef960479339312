"""Stage ``teacher@<variant>``: teacher embeddings of every distinct target and every (field, state) pair.

    python -m stages.teacher pretrained      # or: random

Reads data/records/*.parquet and models/teacher/<name>/; writes data/teacher/<variant>/ (prototypes, targets,
manifest), metrics/teacher/<variant>.json and metrics/timing/teacher_<variant>.json. Finished batches persist
in data/teacher_work/<variant>/ and are not recomputed. With the runtime setting ``teacher.processes`` > 1 (auto:
one per CUDA GPU; ``vivid_med.runtime``) the stage relaunches itself under torchrun and the processes share the
targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from stages._params import fields, runtime, section
from vivid_med.io import write_json
from vivid_med.runtime import TeacherRuntime, n_processes
from vivid_med.tables import synthetic_datasets
from vivid_med.teacher.cache import run
from vivid_med.teacher.config import TeacherParams

RECORDS, MODELS = Path("data/records"), Path("models/teacher")
OUT, WORK, METRICS, TIMING = Path("data/teacher"), Path("data/teacher_work"), Path("metrics/teacher"), Path("metrics/timing")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", help="a member of teacher.variants (pretrained | random)")
    args = ap.parse_args(argv)
    params, pretrain_fields, settings = section(TeacherParams, "teacher"), fields(), runtime(TeacherRuntime, "teacher")
    if args.variant not in params.variants:
        raise SystemExit(f"teacher variant {args.variant!r} is not in teacher.variants {params.variants}")
    nproc = n_processes(settings.processes)
    if nproc > 1 and "LOCAL_RANK" not in os.environ:  # relaunch this stage under torchrun
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "stages.teacher", args.variant]
        return subprocess.run(cmd, check=False).returncode
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    manifest = run(args.variant, params, pretrain_fields, RECORDS, MODELS, OUT / args.variant, WORK / args.variant,
                   settings)
    if manifest is not None:
        keys = ("teacher", "variant", "layer", "pooling", "n_targets", "n_prototypes", "forward_passes", "semantic")
        metrics = {k: manifest[k] for k in keys}
        records = sorted(p.stem for p in RECORDS.glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
        metrics["synthetic_data"] = synthetic_datasets(RECORDS, records)
        timing = {k: manifest[k] for k in ("forward_passes_this_run", "seconds", "processes")}  # runtime facts
        write_json(TIMING / f"teacher_{args.variant}.json", timing, indent=1)
        write_json(METRICS / f"{args.variant}.json", metrics, indent=1)  # the metric last
        print(json.dumps({**metrics, **timing}))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
