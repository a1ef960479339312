"""Stage pretrain@<run>: train one backbone (params ``pretrain.common`` + ``pretrain.runs.<run>``) and export it.

Reads data/records/<dataset>.parquet (train split), data/images/<dataset>/ and, for vivid runs,
data/teacher/<variant>/. Writes models/<run>/ (backbone + heads + config), metrics/pretrain/<run>.json and
metrics/pretrain/<run>_curve.csv; checkpoints go to checkpoints/<run>/ (kept across reruns, used to resume).
Multi-GPU / multi-node: ``torchrun --nproc-per-node N -m stages.pretrain <run>``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

import vivid_med
from stages._params import load_section
from vivid_med.data import PretrainDataset, augmentation, encode_states
from vivid_med.imaging import ImageStore
from vivid_med.objectives import build_objective, load_online_teacher, select_prototypes
from vivid_med.student import BackboneConfig, count_params, create_backbone, export_student
from vivid_med.tables import read_records, synthetic_datasets
from vivid_med.train import Student, TrainConfig, train

TRAIN_KEYS = set(TrainConfig.__dataclass_fields__)
RUN_KEYS = TRAIN_KEYS | {"datasets", "model", "img_size", "patch_size", "in_chans", "kwargs", "pretrained", "augment",
                         "objective", "teacher", "teacher_dir", "spd", "orth_weight", "align_weight",
                         "answerability_mask", "temperature", "online"}


TIMING = Path("metrics/timing")
TIMING_KEYS = ("wall_s", "images_per_s", "data_share", "resumed_from")

def run_config(section: dict, run: str) -> dict:
    """``pretrain.common`` overlaid with ``pretrain.runs.<run>``; unknown keys are refused (typos)."""
    if run not in section["runs"]:
        raise KeyError(f"params.yaml pretrain.runs: no run {run!r}; known: {sorted(section['runs'])}")
    cfg = {**section["common"], **section["runs"][run]}
    unknown = sorted(set(cfg) - RUN_KEYS)
    if unknown:
        raise KeyError(f"params.yaml pretrain (run {run!r}): unknown key(s) {unknown}; known: {sorted(RUN_KEYS)}")
    return cfg


def load_training_set(datasets: list[str], fields: tuple[str, ...], split: str = "train"):
    """(records, per-sample (store index, pixel row), image stores) for the ``split`` rows of ``datasets``."""
    frames, stores, store_idx, rows = [], [], [], []
    for k, name in enumerate(datasets):
        df = read_records(Path("data/records") / f"{name}.parquet")
        df = df[df["split"] == split].reset_index(drop=True)
        store = ImageStore.open(Path("data/images") / name)
        known = set(store.index["image_id"])
        dropped = (~df["image_id"].isin(known)).sum()
        if dropped:
            print(f"{name}: {dropped} {split} record(s) without an image (see data/images/{name}/rejects.parquet)")
        df = df[df["image_id"].isin(known)].reset_index(drop=True)
        if df.empty:
            raise ValueError(f"data/images/{name}: no image for any {split} record of data/records/{name}.parquet "
                             "(run the images stage)")
        frames.append(df)
        stores.append(store.pixels)
        store_idx.append(np.full(len(df), k))
        rows.append(store.rows(df["image_id"].tolist()))
    return pd.concat(frames, ignore_index=True), stores, np.concatenate(store_idx), np.concatenate(rows)


def fingerprint(*parts) -> str:
    """sha256 over bytes and JSON-able parts: a checkpoint resumes only a run with the same fingerprint."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


#: The code whose change must invalidate a checkpoint (DVC reruns the stage; the stale checkpoint must not resume).
TRAINING_CODE = ("vivid_med/train.py", "vivid_med/data.py", "vivid_med/objectives.py", "vivid_med/imaging.py",
                 "vivid_med/student")


def code_and_pixels_digest(stores: list[np.ndarray]) -> bytes:
    """Digest of the training code and of the pixels trained on."""
    h = hashlib.sha256()
    root = Path(vivid_med.__file__).resolve().parent.parent
    for path in sorted(p for name in TRAINING_CODE for p in
                       ([root / name] if name.endswith(".py") else (root / name).glob("*.py"))):
        h.update(path.read_bytes())
    for pixels in stores:
        h.update(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    return h.digest()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m stages.pretrain <run>   (a key of pretrain.runs in params.yaml)")
    run = argv[0]
    section = load_section("pretrain")
    cfg = run_config(section, run)
    fields = tuple(section["fields"])
    bcfg = BackboneConfig(cfg["model"], cfg["img_size"], cfg["patch_size"], cfg["in_chans"], cfg["pretrained"],
                          cfg.get("kwargs") or {})
    tcfg = TrainConfig(**{k: v for k, v in cfg.items() if k in TRAIN_KEYS})
    model_dir, metrics_dir, ckpt_dir = Path("models") / run, Path("metrics/pretrain"), Path("checkpoints") / run
    ckpt_dir.mkdir(parents=True, exist_ok=True)  # a DVC output even for runs of 0 steps
    torch.manual_seed(tcfg.seed)
    backbone = create_backbone(bcfg)
    objective_name = cfg["objective"]
    summary: dict = {"steps": 0, "wall_s": 0.0}
    objective = None
    if objective_name != "none":
        records, stores, store_idx, rows = load_training_set(cfg["datasets"], fields)
        states = encode_states(records, fields)
        prototypes = targets = target_rows = texts = teacher = lm_width = None
        if objective_name == "vivid":
            from vivid_med.teacher.cache import load_cache

            cache = load_cache(Path("data/teacher") / cfg["teacher"], expect={"variant": cfg["teacher"]})
            if tuple(cache.fields) != fields:
                raise ValueError(f"pretrain.fields {list(fields)} differ from the teacher cache's fields "
                                 f"{list(cache.fields)} (teacher.fields): make them equal")
            prototypes, targets = select_prototypes(cache, fields), cache.targets
            target_rows = cache.target_rows(records["target_hash"].tolist()).numpy()
        elif objective_name == "vivid_online":
            from vivid_med.ums import UMSRecord, target_text

            teacher, lm_width = load_online_teacher(cfg["teacher_dir"], cfg["teacher"],
                                                  {"seed": tcfg.seed, **(cfg.get("online") or {})})
            texts = [target_text(UMSRecord.model_validate_json(j), fields) for j in records["ums_json"]]
        objective = build_objective(objective_name, backbone.num_features, len(fields), cfg, prototypes, targets,
                                    teacher, lm_width)
        dataset = PretrainDataset(stores, store_idx, rows, states, target_rows, texts,
                                  augmentation(bcfg.img_size, **(cfg.get("augment") or {})))
        fp = fingerprint(cfg, fields, records[["image_id", "target_hash", *fields]].astype(str).values.tolist(),
                         code_and_pixels_digest(stores),
                         *(t.numpy().tobytes() for t in (prototypes, targets) if t is not None))
        student = Student(backbone, objective)
        summary = train(student, dataset, tcfg, ckpt_dir, metrics_dir / f"{run}_curve.csv", fp)
        summary["n_train"] = len(dataset)
    if dist.is_initialized():
        dist.barrier()
        if dist.get_rank() != 0:
            dist.destroy_process_group()
            return
    backbone.cpu()
    config = export_student(backbone, objective.cpu() if objective is not None else None, model_dir, bcfg, cfg)
    heads = 0 if objective is None else count_params(objective) - sum(
        p.numel() for n, p in objective.named_parameters() if n.startswith("teacher."))
    timing = {k: summary.pop(k) for k in TIMING_KEYS if k in summary}
    metrics = {"run": run, "objective": objective_name, **summary, "n_params": config["n_params"],
               "n_params_heads": heads, "bytes": config["bytes"],
               "synthetic_data": synthetic_datasets("data/records", cfg["datasets"])}
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / f"{run}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    TIMING.mkdir(parents=True, exist_ok=True)  # wall-clock facts vary by machine: kept out of the metrics
    (TIMING / f"pretrain_{run}.json").write_text(json.dumps(timing, indent=2) + "\n")
    if objective is None and not (metrics_dir / f"{run}_curve.csv").exists():
        (metrics_dir / f"{run}_curve.csv").write_text("step,loss\n")
    print(f"pretrain {run}: {json.dumps({**metrics, **timing})}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
