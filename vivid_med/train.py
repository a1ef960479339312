"""The pretraining loop: plain PyTorch, one process per device under torchrun (DDP), resumable.

Read top to bottom: set up (distributed, seeds), build optimizer (timm's parameter groups) and schedule, resume
from the last checkpoint if its fingerprint matches, then loop: micro-batches with gradient accumulation, a NaN
guard, clipping, an AdamW step, a DVCLive step (rank 0), and a checkpoint every ``checkpoint_every`` steps.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.distributed as dist
import torch.nn as nn
from dvclive import Live
from pydantic import Field
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vivid_med.data import StepBatches
from vivid_med.imaging import to_tensor
from vivid_med.io import failpoint, write_json
from vivid_med.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability, StrictParams
from vivid_med.runtime import PretrainRuntime

FROZEN_PREFIX = "objective.teacher."  # never checkpointed: the frozen online teacher


class TrainParams(StrictParams):
    """The optimisation of one run (keys of ``pretrain.common``, overridable per run)."""

    seed: NonNegativeInt
    steps: NonNegativeInt
    batch_size: PositiveInt       # effective batch per optimizer step, over all processes and micro-batches
    grad_accum: PositiveInt
    lr_vit: PositiveFloat
    lr_head: PositiveFloat
    weight_decay: NonNegativeFloat
    warmup_steps: NonNegativeInt
    min_lr_ratio: Probability     # the cosine ends at min_lr_ratio x the peak learning rate
    grad_clip: PositiveFloat
    amp: Literal["auto", "bf16", "off"]  # auto: bf16 autocast on GPUs that support it
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None  # ViT layer k of D learns at lr_vit x this^(D-k)


class Student(nn.Module):
    """Backbone + objective heads: ``forward(images [B,C,S,S], batch) -> dict of loss terms``."""

    def __init__(self, backbone: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.backbone, self.objective = backbone, objective

    def forward(self, images: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tokens = self.backbone.forward_features(images)
        pooled = self.backbone.forward_head(tokens, pre_logits=True)
        return self.objective(tokens, pooled, batch)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return (dist.get_rank() if world > 1 else 0), world, device


def lr_factor(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def no_weight_decay(module: nn.Module) -> set[str]:
    """Parameters of ``module`` exempt from weight decay by name, timm's convention: what each submodule's
    ``no_weight_decay()`` names (a timm ViT: pos_embed, cls_token, reg_token; objective heads: their learned
    query and readout tokens)."""
    return {f"{prefix}.{name}" if prefix else name for prefix, m in module.named_modules()
            if callable(getattr(m, "no_weight_decay", None)) for name in m.no_weight_decay()}


def param_groups(student: Student, cfg: TrainParams) -> list[dict[str, Any]]:
    """AdamW groups from timm's helpers: the ViT at ``lr_vit``, the heads at ``lr_head``; no weight decay on 1-D
    parameters, biases and ``no_weight_decay`` names. With ``layer_decay`` the ViT's groups are timm's
    ``param_groups_layer_decay``: layer k of a ViT of depth D learns at lr_vit x layer_decay^(D - k), where timm
    numbers the embeddings 0 and ``blocks.i`` i + 1 (the final norm goes with the last block, at lr_vit)."""
    vit, heads = student.backbone, student.objective
    if cfg.layer_decay is None:
        vit_groups = param_groups_weight_decay(vit, cfg.weight_decay, no_weight_decay_list=no_weight_decay(vit))
    else:
        vit_groups = param_groups_layer_decay(vit, cfg.weight_decay, no_weight_decay_list=no_weight_decay(vit),
                                              layer_decay=cfg.layer_decay)
    head_groups = param_groups_weight_decay(heads, cfg.weight_decay, no_weight_decay_list=no_weight_decay(heads))
    groups = []
    for lr, part in ((cfg.lr_vit, vit_groups), (cfg.lr_head, head_groups)):
        for g in part:
            groups.append({"params": g["params"], "weight_decay": g["weight_decay"], "lr": lr * g.get("lr_scale", 1.0)})
    return groups


def trainable_state(student: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in student.state_dict().items() if not k.startswith(FROZEN_PREFIX)}


def save_checkpoint(path: Path, student: nn.Module, opt: torch.optim.Optimizer, sched: Any, step: int,
                    fingerprint: str, log: dict[str, Any]) -> None:
    """Atomic write (tmp file + rename) of everything a bit-exact resume needs (``log``: last terms, time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "fingerprint": fingerprint, "model": trainable_state(student), "log": log,
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this run (same fingerprint), else None."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        print(f"{path}: checkpoint of a different configuration; starting from step 0")
        return None
    return state


class _Live(Live):
    """DVCLive whose ``metrics.json`` is replaced atomically (a kill never leaves half a JSON), ``step`` first."""

    def make_summary(self) -> None:
        self.summary = {"step": self.step, **{k: v for k, v in self.summary.items() if k != "step"}}
        write_json(self.metrics_file, self.summary, indent=4)


class Curve:
    """The training curve, logged with DVCLive (rank 0; ``folder`` None elsewhere): one
    ``<folder>/plots/metrics/<name>.tsv`` per metric (``step`` and the value) and ``<folder>/metrics.json`` (the
    latest values and ``step``), rewritten every step so that ``dvc exp show`` follows a running experiment.

    The rows also travel in the checkpoint: DVC deletes a stage's outputs before it reruns the stage, so a resumed
    run rebuilds the folder from its checkpoint's rows and ends with the same files as an uninterrupted run.
    (``Live.next_step`` is not used: it re-reads every curve file at each step for DVC Studio.)
    """

    def __init__(self, folder: Path | None, rows: list[dict[str, float]]) -> None:
        self.rows, self.live = list(rows), None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # what DVC does to a stage's outputs: no stale file stays
            self.live = _Live(str(folder), save_dvc_exp=False, dvcyaml=None)
            for row in self.rows:
                self._log(row)
            self.live.make_summary()

    def add(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.live is not None:
            self._log(row)
            self.live.make_summary()

    def _log(self, row: dict[str, float]) -> None:
        self.live.step = int(row["step"])
        for name, value in row.items():
            if name != "step":
                self.live.log_metric(name, value)

    def end(self) -> None:
        if self.live is not None:
            self.live.end()


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: (torch.stack([s[k] for s in samples]) if isinstance(samples[0][k], torch.Tensor)
                else [s[k] for s in samples]) for k in samples[0]}


def train(student: Student, dataset: Dataset, cfg: TrainParams, ckpt_dir: Path, live_dir: Path | None = None,
          fingerprint: str = "", callback: Callable[[int, dict[str, float]], None] | None = None,
          runtime: PretrainRuntime = PretrainRuntime()) -> dict[str, Any]:
    """Train ``student`` in place for ``cfg.steps`` optimizer steps; returns the run summary (rank 0's view).
    ``runtime``: loader workers and the checkpoint interval (neither changes a result).

    Resumes from ``ckpt_dir/last.pt`` when its fingerprint equals ``fingerprint``. Logs every step to the DVCLive
    folder ``live_dir`` (``Curve``): the loss terms (averaged over processes), both learning rates, the gradient
    norm and ``timing/images_per_s``. Raises FloatingPointError on a non-finite loss or gradient, leaving the last
    good checkpoint in place. ``callback(step, terms)`` runs after every step (tests use it to interrupt a run).
    """
    rank, world, device = setup_distributed()
    if device.type == "cpu":  # free on CPU; on GPUs deterministic kernels can cost, so they are left to the user
        torch.use_deterministic_algorithms(True, warn_only=True)
    student.to(device)
    opt = torch.optim.AdamW(param_groups(student, cfg), betas=(0.9, 0.999))
    schedule = partial(lr_factor, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    ckpt = Path(ckpt_dir) / "last.pt"
    start, last_saved, last, wall_before, curve_rows = 0, None, {}, 0.0, []
    state = load_checkpoint(ckpt, fingerprint)
    if state is not None:
        missing, unexpected = student.load_state_dict(state["model"], strict=False)
        if unexpected or any(not k.startswith(FROZEN_PREFIX) for k in missing):
            raise RuntimeError(f"{ckpt}: checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = last_saved = state["step"]
        last, wall_before, curve_rows = state["log"]["last"], state["log"]["wall_s"], state["log"]["curve"]
        if rank == 0:
            print(f"resuming from {ckpt} at step {start}/{cfg.steps}")
    model = DDP(student, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else student
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    sampler = StepBatches(len(dataset), cfg.batch_size, cfg.seed, start, cfg.steps, cfg.grad_accum, world, rank)
    loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=runtime.num_workers,
                             collate_fn=_collate))
    curve = Curve(live_dir if rank == 0 else None, curve_rows)
    in_chans = student.backbone.patch_embed.proj.in_channels
    t0, t_data = time.perf_counter(), 0.0
    model.train()
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=rank != 0, desc="pretrain"):
        t_step = time.perf_counter()
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            t = time.perf_counter()
            batch = next(loader)
            images = to_tensor(batch.pop("image")).to(device).expand(-1, in_chans, -1, -1)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            t_data += time.perf_counter() - t
            sync = world == 1 or micro == cfg.grad_accum - 1
            with (nullcontext() if sync else model.no_sync()):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    out = model(images, batch)
                bad = torch.tensor(float(not torch.isfinite(out["loss"]).item()))
                if world > 1:
                    dist.all_reduce(bad)
                if bad.item():
                    terms = {k: float(v.detach()) for k, v in out.items()}
                    raise FloatingPointError(
                        f"step {step}: non-finite loss {terms}; stopped. Last good checkpoint: "
                        f"{ckpt if last_saved is not None else 'none'} (step {last_saved})")
                (out["loss"] / cfg.grad_accum).backward()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        if world > 1:  # the curve shows the terms over the whole batch, as one process would
            mean = torch.tensor(list(sums.values()), dtype=torch.float64, device=device)
            dist.all_reduce(mean)
            sums = dict(zip(sums, (mean / world).tolist()))
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"step {step}: non-finite gradient norm; stopped. Last good checkpoint: "
                                     f"{ckpt if last_saved is not None else 'none'} (step {last_saved})")
        lrs = {"lr_vit": cfg.lr_vit * schedule(step), "lr_head": cfg.lr_head * schedule(step)}  # peak x schedule
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        last = {"step": step + 1, **lrs, **sums, "grad_norm": float(grad_norm)}
        curve.add({**last, "timing/images_per_s": round(cfg.batch_size / (time.perf_counter() - t_step), 1)})
        if (step + 1) % runtime.checkpoint_every == 0 or step + 1 == cfg.steps:
            if rank == 0:
                log = {"last": last, "wall_s": wall_before + time.perf_counter() - t0, "curve": curve.rows}
                save_checkpoint(ckpt, student, opt, sched, step + 1, fingerprint, log)
            if world > 1:
                dist.barrier()
            last_saved = step + 1
        if callback is not None:
            callback(step + 1, last)
        failpoint(f"pretrain:step:{step + 1}")
    curve.end()
    wall = time.perf_counter() - t0
    done = cfg.steps - start
    return {"steps": cfg.steps, "resumed_from": start, "wall_s": round(wall_before + wall, 2), "world_size": world,
            "images_per_s": round(done * cfg.batch_size / wall, 1) if done else None,
            "data_share": round(t_data / wall, 4) if done else None,
            "final": {k: v for k, v in last.items() if k != "step"}}
