"""Stage `teacher@<variant>`: teacher embeddings of every distinct target and every (field, state) pair.

    python -m stages.teacher pretrained      # or: random

params (section ``teacher``): ``model`` (name of models/teacher/<name>), ``variants``, ``fields`` (the
pretraining fields the targets cover), ``template`` (chat | plain), ``pooling`` (name_state |
name_tokens | all_tokens | last_token), ``layer`` (the model runs only up to it), ``centre``,
``batch_size``, ``dtype``, ``device``, ``seed`` (random variant), ``trust_remote_code``, ``processes``
(auto: one per CUDA GPU, launched with torchrun; an integer forces that many, also on CPU).
Outputs: data/teacher/<variant>/ (prototypes, targets, manifest), metrics/teacher/<variant>.json.
Finished batches persist in data/teacher_work/<variant>/ and are not recomputed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from stages._params import load_section
from vivid_med.fields import PRETRAIN_FIELDS, check_fields
from vivid_med.tables import synthetic_datasets
from vivid_med.teacher.cache import build_cache, distinct_targets
from vivid_med.teacher.convert import teacher_name
from vivid_med.teacher.embed import Embedder
from vivid_med.teacher.load import load_teacher

RECORDS, MODELS = Path("data/records"), Path("models/teacher")
OUT, WORK, METRICS = Path("data/teacher"), Path("data/teacher_work"), Path("metrics/teacher")
TIMING = Path("metrics/timing")


def n_processes(value: int | str) -> int:
    """``auto`` -> number of CUDA GPUs (at least 1); an integer as given."""
    if value == "auto":
        return max(1, torch.cuda.device_count())
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"teacher.processes {value!r}: expected auto or a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m stages.teacher <variant>")
    variant, params = argv[0], load_section("teacher")
    if variant not in params["variants"]:
        raise SystemExit(f"teacher variant {variant!r} is not in teacher.variants {params['variants']}")
    nproc = n_processes(params.get("processes", "auto"))
    if nproc > 1 and "LOCAL_RANK" not in os.environ:  # relaunch this stage under torchrun
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "stages.teacher", variant]
        return subprocess.run(cmd, check=False).returncode
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    fields = check_fields(params.get("fields", list(PRETRAIN_FIELDS)), "teacher.fields")
    records = sorted(p for p in RECORDS.glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
    targets = distinct_targets(records, fields)
    teacher = load_teacher(
        MODELS / teacher_name(params["model"]), variant, layer=params["layer"], dtype=params["dtype"],
        device=params["device"], seed=params["seed"], trust_remote_code=bool(params["trust_remote_code"]),
    )
    embedder = Embedder(teacher, params["pooling"], params["template"], fields)
    manifest = build_cache(embedder, targets, OUT / variant, WORK / variant, centre=bool(params["centre"]),
                           batch_size=params["batch_size"], dtype=params["dtype"])
    if manifest is not None:
        keys = ("teacher", "variant", "layer", "pooling", "n_targets", "n_prototypes", "forward_passes", "semantic")
        metrics = {k: manifest[k] for k in keys}
        metrics["synthetic_data"] = synthetic_datasets(RECORDS, [p.stem for p in records])
        timing = {k: manifest[k] for k in ("forward_passes_this_run", "seconds")}  # varies run to run
        for folder, name, data in ((METRICS, variant, metrics), (TIMING, f"teacher_{variant}", timing)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(json.dumps({**metrics, **timing}))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
