"""Training loop: schedule, step-indexed batches, exact resume after a kill (weights and DVCLive curve), NaN guard,
2-process DDP (gloo)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from helpers import TINY_VIT, backbone_params, section, train_params
from vivid_med.data import AugmentParams, PretrainDataset, StepBatches, augmentation
from vivid_med.objectives import OBJECTIVES
from vivid_med.objectives.base import Objective
from vivid_med.objectives.bce import BCEObjective
from vivid_med.states import NULL_CODE
from vivid_med.student import create_backbone
from vivid_med.runtime import PretrainRuntime
from vivid_med.train import Student, lr_factor, param_groups, train


CFG = train_params(steps=6, grad_accum=2, warmup_steps=2)
SHORT = train_params(steps=4)  # grad_accum 1, warm-up 1
EVERY2 = PretrainRuntime(checkpoint_every=2)  # a checkpoint every 2 steps


def _dataset(n: int = 40) -> PretrainDataset:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    states = rng.integers(0, NULL_CODE + 1, (n, 4))
    augment = AugmentParams(**section("pretrain")["common"]["augment"])
    return PretrainDataset([pixels], np.zeros(n, int), np.arange(n), states, transform=augmentation(32, augment))


def _student(objective: str = "bce") -> Student:
    torch.manual_seed(0)
    return Student(create_backbone(backbone_params()), OBJECTIVES[objective](32, 4))


def _weights(student: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)


class _Tokens(Objective):
    """Heads with a learned query token, declared the timm way (``no_weight_decay``)."""

    def __init__(self) -> None:
        super().__init__()
        self.query, self.head = nn.Parameter(torch.zeros(2, 32)), nn.Linear(32, 4)

    def no_weight_decay(self) -> set[str]:
        return {"query"}


def _groups_by_name(student: Student, cfg) -> dict[str, dict]:
    """name -> {"lr", "weight_decay"} of the AdamW group holding that parameter."""
    groups = param_groups(student, cfg)
    ids = {id(p): g for g in groups for p in g["params"]}
    assert len(ids) == sum(len(g["params"]) for g in groups), "a parameter in two groups"
    return {n: {k: ids[id(p)][k] for k in ("lr", "weight_decay")} for n, p in student.named_parameters()}


def test_no_weight_decay_on_tokens_biases_and_norms():
    cfg = train_params(weight_decay=0.05, lr_vit=1e-3, lr_head=2e-3)
    torch.manual_seed(0)
    student = Student(create_backbone(backbone_params()), _Tokens())
    groups = _groups_by_name(student, cfg)
    decayed = {n for n, g in groups.items() if g["weight_decay"] == 0.05}
    assert {"backbone.patch_embed.proj.weight", "backbone.blocks.0.attn.qkv.weight", "objective.head.weight"} <= decayed
    assert not {"backbone.pos_embed", "backbone.cls_token", "backbone.patch_embed.proj.bias",
                "backbone.blocks.0.norm1.weight", "objective.query", "objective.head.bias"} & decayed
    assert decayed == {n for n, p in student.named_parameters()
                       if p.ndim >= 2 and n not in {"backbone.pos_embed", "backbone.cls_token", "objective.query"}}
    assert {g["lr"] for n, g in groups.items() if n.startswith("backbone.")} == {1e-3}
    assert {g["lr"] for n, g in groups.items() if n.startswith("objective.")} == {2e-3}


def test_layer_decay_scales_layer_k_by_decay_to_the_depth_minus_k():
    """timm's layers: 0 the embeddings, k = 1..depth the block ``blocks.{k-1}`` (the final norm with the last)."""
    depth, decay = 3, 0.5
    cfg = train_params(layer_decay=decay, lr_vit=1e-3, lr_head=2e-3)
    torch.manual_seed(0)
    student = Student(create_backbone(backbone_params(kwargs={**TINY_VIT["kwargs"], "depth": depth})), _Tokens())
    groups = _groups_by_name(student, cfg)
    for k in range(1, depth + 1):
        lrs = [g["lr"] for n, g in groups.items() if n.startswith(f"backbone.blocks.{k - 1}.")]
        assert lrs and lrs == pytest.approx([1e-3 * decay ** (depth - k)] * len(lrs)), k
    for name in ("pos_embed", "cls_token", "patch_embed.proj.weight"):
        assert groups[f"backbone.{name}"]["lr"] == pytest.approx(1e-3 * decay ** depth), name
    assert groups["backbone.norm.weight"]["lr"] == 1e-3 and groups["objective.query"]["lr"] == 2e-3
    assert groups["backbone.pos_embed"]["weight_decay"] == 0
    assert groups["backbone.blocks.0.mlp.fc1.weight"]["weight_decay"] > 0


def test_batches_depend_only_on_step_and_split_over_ranks():
    full = list(StepBatches(40, 8, seed=3, start=0, steps=10, grad_accum=2))
    assert list(StepBatches(40, 8, seed=3, start=4, steps=10, grad_accum=2)) == full[8:]
    ranks = [list(StepBatches(40, 8, seed=3, start=0, steps=10, grad_accum=2, world=2, rank=r)) for r in (0, 1)]
    for i, micro in enumerate(full):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(micro)
    epoch0 = [i for m in full[:10] for i, _ in m]  # 5 steps x 8 = one epoch of 40: a permutation
    assert sorted(epoch0) == list(range(40))
    assert len({s for m in full for _, s in m}) == 80  # every sample draw has its own augmentation seed
    with pytest.raises(ValueError, match="divisible"):
        StepBatches(40, 8, 0, 0, 1, grad_accum=3)


def curve_files(folder) -> dict[str, str]:
    """A DVCLive folder's files by relative path (wall-clock values, under ``timing/``, reduced to their steps)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            text = p.read_text()
            if "timing" in p.parts:
                text = "\n".join(line.split("\t")[0] for line in text.splitlines())
            elif p.name == "metrics.json":
                text = json.dumps({k: v for k, v in json.loads(text).items() if k != "timing"})
            out[str(p.relative_to(folder))] = text
    return out


def test_killed_run_resumes_to_the_same_weights_and_curve(tmp_path):
    reference = _student()
    train(reference, _dataset(), CFG, tmp_path / "a", tmp_path / "live_a", fingerprint="x", runtime=EVERY2)

    def kill(step, terms):
        if step == 5:  # after the checkpoint at step 4: step 5's work is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_student(), _dataset(), CFG, tmp_path / "b", tmp_path / "live_b", fingerprint="x", callback=kill,
              runtime=EVERY2)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 4
    assert json.loads((tmp_path / "live_b/metrics.json").read_text())["step"] == 5  # the curve is live
    resumed = _student()  # a fresh process: new model, same seed
    summary = train(resumed, _dataset(), CFG, tmp_path / "b", tmp_path / "live_b", fingerprint="x", runtime=EVERY2)
    assert summary["resumed_from"] == 4
    ref, got = _weights(reference), _weights(resumed)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    curve, resumed_curve = curve_files(tmp_path / "live_a"), curve_files(tmp_path / "live_b")
    assert resumed_curve == curve
    names = {"loss", "bce", "lr_vit", "lr_head", "grad_norm", "timing/images_per_s"}
    assert set(curve) == {"metrics.json", *(f"plots/metrics/{n}.tsv" for n in names)}
    loss = (tmp_path / "live_b/plots/metrics/loss.tsv").read_text().splitlines()
    assert loss[0] == "step\tloss" and [int(r.split("\t")[0]) for r in loss[1:]] == [1, 2, 3, 4, 5, 6]
    summary_json = json.loads((tmp_path / "live_b/metrics.json").read_text())
    assert summary_json["step"] == 6 and summary_json["timing"]["images_per_s"] > 0


def test_checkpoint_of_other_config_is_not_resumed(tmp_path):
    train(_student(), _dataset(), CFG, tmp_path / "c", None, fingerprint="one", runtime=EVERY2)
    summary = train(_student(), _dataset(), CFG, tmp_path / "c", None, fingerprint="two", runtime=EVERY2)
    assert summary["resumed_from"] == 0


class _NanAfter(nn.Module):
    """A real objective whose loss turns NaN from its ``k``-th call (a diverging run)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.inner, self.k, self.calls = BCEObjective(32, 4), k, 0

    def forward(self, tokens, pooled, batch):
        self.calls += 1
        out = self.inner(tokens, pooled, batch)
        return {**out, "loss": out["loss"] * float("nan")} if self.calls >= self.k else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    student = Student(create_backbone(backbone_params()), _NanAfter(k=7))  # micro-batch 7 = step 4 (grad_accum 2)
    with pytest.raises(FloatingPointError, match=r"step 3: non-finite loss.*step 2\)"):
        train(student, _dataset(), CFG, tmp_path / "n", tmp_path / "live_n", fingerprint="x", runtime=EVERY2)
    state = torch.load(tmp_path / "n" / "last.pt", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    student = _student("state_classifier")
    train(student, _dataset(), SHORT, os.path.join(out, "ckpt"), None, fingerprint="ddp", runtime=EVERY2)
    if rank == 0:
        torch.save(_weights(student), os.path.join(out, "ddp.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    single = _student("state_classifier")
    train(single, _dataset(), SHORT, tmp_path / "single", None, fingerprint="one", runtime=EVERY2)
    ddp, ref = torch.load(tmp_path / "ddp.pt", weights_only=True), _weights(single)
    for k in ref:
        assert torch.allclose(ddp[k], ref[k], atol=1e-4), k
