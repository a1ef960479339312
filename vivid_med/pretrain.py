"""Pretrain one backbone: the ``pretrain:`` params, the run's data and objective, training, and the export.

From a notebook (the stage ``pretrain@<run>`` does exactly this)::

    from vivid_med.params import load_fields, load_section
    from vivid_med.pretrain import PretrainParams, run
    from vivid_med.teacher.config import TeacherParams
    result = run("bce", load_section(PretrainParams, "params.yaml", "pretrain"), load_fields("params.yaml"),
                 load_section(TeacherParams, "params.yaml", "teacher"))
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from pydantic import Field, model_validator

from vivid_med.data import AugmentParams, PretrainDataset, augmentation
from vivid_med.imaging import ImageStore
from vivid_med.io import write_text
from vivid_med.objectives import NO_OBJECTIVE, OBJECTIVES, Objective, ObjectiveConfig, Resources
from vivid_med.params import ParamsError, RunNames, StrictParams, validate_part
from vivid_med.states import state_codes
from vivid_med.runtime import PretrainRuntime
from vivid_med.student import BackboneParams, count_params, create_backbone, export_student
from vivid_med.tables import read_records, synthetic_datasets
from vivid_med.teacher.config import TeacherParams
from vivid_med.train import Curve, Student, TrainParams, setup_distributed, train


class CommonParams(BackboneParams, TrainParams):
    """``pretrain.common``: the backbone, the optimisation, the data and its augmentation of every run."""

    datasets: Annotated[list[str], Field(min_length=1)]  # records + images trained on (their train split)
    augment: AugmentParams


@dataclass(frozen=True)
class RunConfig:
    """One resolved run: ``common`` with the run's overrides, and its objective (None: no training)."""

    name: str
    common: CommonParams
    objective: ObjectiveConfig | None

    @property
    def objective_name(self) -> str:
        return NO_OBJECTIVE if self.objective is None else self.objective.objective


class PretrainParams(StrictParams):
    """The ``pretrain:`` section. A run (``runs.<name>``) is its objective's keys plus overrides of ``common``."""

    train_runs: RunNames                                    # what `dvc repro` trains and evaluates
    export: str                                             # the run whose backbone becomes models/product
    common: CommonParams
    runs: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def _runs_resolve(self) -> "PretrainParams":
        unknown = [r for r in [*self.train_runs, self.export] if r not in self.runs]
        if unknown:
            raise ValueError(f"train_runs / export name run(s) {unknown} not in runs; known: {sorted(self.runs)}")
        if self.export not in self.train_runs:
            raise ValueError(f"export: {self.export!r} is not trained (train_runs: {self.train_runs})")
        for name in self.runs:
            self.resolve(name)
        return self

    def resolve(self, name: str) -> RunConfig:
        """The run ``name``: common overridden by its common keys, its objective's keys validated."""
        if name not in self.runs:
            raise ParamsError(f"pretrain.runs: no run {name!r}; known: {sorted(self.runs)}")
        spec, where = self.runs[name], f"runs.{name}"
        overrides = {k: v for k, v in spec.items() if k in CommonParams.model_fields}
        common = validate_part(CommonParams, {**self.common.model_dump(), **overrides}, where)
        own = {k: v for k, v in spec.items() if k not in overrides}
        kind = own.get("objective")
        if kind == NO_OBJECTIVE and len(own) == 1:
            return RunConfig(name, common, None)
        if kind not in OBJECTIVES:
            raise ValueError(f"{where}.objective: {kind!r} is not an objective; known: "
                             f"{[*OBJECTIVES.names(), NO_OBJECTIVE]} (objective {NO_OBJECTIVE} takes no other key)")
        return RunConfig(name, common, validate_part(OBJECTIVES[kind].Config, own, where))


@dataclass(frozen=True)
class Paths:
    """Where a run reads and writes, relative to the working directory (the repository root for the stages)."""

    records: Path = Path("data/records")
    images: Path = Path("data/images")
    teacher_caches: Path = Path("data/teacher")
    teacher_models: Path = Path("models/teacher")
    models: Path = Path("models")
    checkpoints: Path = Path("checkpoints")
    live: Path = Path("dvclive")  # DVCLive folders: <live>/<run>/


@dataclass
class RunResult:
    """``metrics`` (deterministic: git-tracked) and ``timing`` (wall-clock facts) of a run; None off rank 0."""

    metrics: dict[str, Any]
    timing: dict[str, Any]


TIMING_KEYS = ("wall_s", "images_per_s", "data_share", "resumed_from")


def load_training_set(paths: Paths, datasets: list[str], fields: tuple[str, ...], split: str = "train"):
    """(records, the image stores, per-sample store index, per-sample pixel row) of ``split`` of ``datasets``."""
    frames, stores, store_idx, rows = [], [], [], []
    for k, name in enumerate(datasets):
        df = read_records(paths.records / f"{name}.parquet")
        df = df[df["split"] == split].reset_index(drop=True)
        store = ImageStore.open(paths.images / name)
        known = set(store.index["image_id"])
        dropped = (~df["image_id"].isin(known)).sum()
        if dropped:
            print(f"{name}: {dropped} {split} record(s) without an image (see {paths.images / name}/rejects.parquet)")
        df = df[df["image_id"].isin(known)].reset_index(drop=True)
        if df.empty:
            raise ValueError(f"{paths.images / name}: no image for any {split} record of "
                             f"{paths.records / name}.parquet (run the images stage)")
        frames.append(df)
        stores.append(store)
        store_idx.append(np.full(len(df), k))
        rows.append(store.rows(df["image_id"].tolist()))
    return pd.concat(frames, ignore_index=True), stores, np.concatenate(store_idx), np.concatenate(rows)


def check_teacher(cfg: RunConfig, teacher: TeacherParams) -> None:
    """Refuse, before any data is read, an objective whose teacher variant no teacher stage makes."""
    if cfg.objective is None or not hasattr(cfg.objective, "teacher"):
        return
    if OBJECTIVES[cfg.objective_name].needs.teacher_cache and cfg.objective.teacher not in teacher.variants:
        raise ParamsError(f"pretrain.runs.{cfg.name}.teacher: {cfg.objective.teacher!r} is not in teacher.variants "
                          f"{teacher.variants} (no cache data/teacher/{cfg.objective.teacher})")


def provide(cls: type[Objective], cfg: RunConfig, fields: tuple[str, ...], records: pd.DataFrame,
            teacher: TeacherParams, paths: Paths) -> tuple[Resources, dict[str, Any]]:
    """What the objective's ``needs`` ask for: its Resources and the per-sample dataset extras."""
    resources, extras = Resources(fields=fields, seed=cfg.common.seed), {}
    if cls.needs.teacher_cache:
        from vivid_med.teacher.cache import load_cache

        variant = cfg.objective.teacher
        resources.teacher_cache = load_cache(paths.teacher_caches / variant, expect={"variant": variant})
        extras["target_rows"] = resources.teacher_cache.target_rows(records["target_hash"].tolist()).numpy()
    if cls.needs.language_model:
        from vivid_med.teacher.convert import teacher_name
        from vivid_med.teacher.load import load_teacher

        # float32 on the CPU: the training loop moves it with the student and autocasts to bf16 on a GPU
        resources.language_model = load_teacher(paths.teacher_models / teacher_name(teacher.model),
                                                variant=cfg.objective.teacher, head=True, dtype="float32",
                                                device="cpu", seed=teacher.seed)
    if cls.needs.target_text:
        from vivid_med.ums import UMSRecord, target_text

        extras["texts"] = [target_text(UMSRecord.model_validate_json(j), fields) for j in records["ums_json"]]
    return resources, extras


def code_digest() -> bytes:
    """Digest of every vivid_med module imported in this process: a checkpoint resumes only the same code."""
    h = hashlib.sha256()
    for name in sorted(n for n in sys.modules if n == "vivid_med" or n.startswith("vivid_med.")):
        path = getattr(sys.modules[name], "__file__", None)
        if path:
            h.update(name.encode() + b"\0" + Path(path).read_bytes())
    return h.digest()


def checkpoint_key(cfg: RunConfig, fields: tuple[str, ...], records: pd.DataFrame, stores: list[ImageStore],
                   objective: Objective) -> str:
    """sha256 over the run's params, records, pixels, teacher buffers and code: what a checkpoint must match."""
    h = hashlib.sha256()
    h.update(json.dumps([cfg.common.model_dump(), cfg.objective.model_dump(), fields], sort_keys=True).encode())
    h.update(json.dumps(records[["image_id", "target_hash", *fields]].astype(str).values.tolist()).encode())
    for store in stores:  # the digest the images stage recorded while writing the pixels, and their shape
        h.update(f"{store.pixels.shape}:{store.digest}".encode())
    for name, buf in sorted(objective.named_buffers()):
        h.update(name.encode() + buf.detach().cpu().contiguous().numpy().tobytes())
    h.update(code_digest())
    return h.hexdigest()


def run(name: str, params: PretrainParams, fields: tuple[str, ...], teacher: TeacherParams,
        paths: Paths = Paths(), runtime: PretrainRuntime = PretrainRuntime()) -> RunResult | None:
    """Train run ``name`` (its curve in ``paths.live/<name>/``) and export it to ``paths.models/<name>``; returns
    its metrics (None off rank 0, which alone writes)."""
    cfg = params.resolve(name)
    check_teacher(cfg, teacher)
    setup_distributed()  # under torchrun: every process joins, also for a run that trains nothing
    model_dir, ckpt_dir = paths.models / name, paths.checkpoints / name
    ckpt_dir.mkdir(parents=True, exist_ok=True)  # a DVC output even for runs of 0 steps
    torch.manual_seed(cfg.common.seed)
    backbone = create_backbone(cfg.common)
    summary: dict[str, Any] = {"steps": 0, "wall_s": 0.0}
    objective = None
    if cfg.objective is not None:
        records, stores, store_idx, rows = load_training_set(paths, cfg.common.datasets, fields)
        cls = OBJECTIVES[cfg.objective_name]
        resources, extras = provide(cls, cfg, fields, records, teacher, paths)
        objective = cls.build(cfg.objective, backbone.num_features, resources)
        dataset = PretrainDataset([s.pixels for s in stores], store_idx, rows, state_codes(records, fields),
                                  extras.get("target_rows"), extras.get("texts"),
                                  augmentation(cfg.common.img_size, cfg.common.augment))
        summary = train(Student(backbone, objective), dataset, cfg.common, ckpt_dir, paths.live / name,
                        checkpoint_key(cfg, fields, records, stores, objective), runtime=runtime)
        summary["n_train"] = len(dataset)
    if dist.is_initialized():
        dist.barrier()
        if dist.get_rank() != 0:
            dist.destroy_process_group()
            return None
    if objective is None:  # a run of 0 steps: its DVCLive folder says step 0 and holds an empty loss curve
        Curve(paths.live / name, []).end()
        write_text(paths.live / name / "plots" / "metrics" / "loss.tsv", "step\tloss\n")
    backbone.cpu()
    config = export_student(backbone, objective.cpu() if objective is not None else None, model_dir, cfg.common,
                            cfg.objective_name)
    heads = 0 if objective is None else count_params(objective) - sum(
        p.numel() for n, p in objective.named_parameters() if n.startswith("teacher."))
    timing = {k: summary.pop(k) for k in TIMING_KEYS if k in summary}
    metrics = {"run": name, "objective": cfg.objective_name, "datasets": list(cfg.common.datasets), **summary,
               "n_params": config["n_params"], "n_params_heads": heads, "bytes": config["bytes"],
               "synthetic_data": synthetic_datasets(paths.records, cfg.common.datasets)}
    if dist.is_initialized():
        dist.destroy_process_group()
    return RunResult(metrics, timing)
