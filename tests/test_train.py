"""Training loop: schedule, step-indexed batches, exact resume after a kill, NaN guard, 2-process DDP (gloo)."""

from __future__ import annotations

import csv
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from vivid_med.data import PretrainDataset, StepBatches, augmentation
from vivid_med.objectives import build_objective
from vivid_med.student import BackboneConfig, create_backbone
from vivid_med.train import Student, TrainConfig, lr_factor, train

TINY = BackboneConfig("vit_tiny_patch16_224", 32, 8, 1, kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
CFG = TrainConfig(steps=6, batch_size=8, grad_accum=2, warmup_steps=2, checkpoint_every=2, lr_vit=1e-3, lr_head=1e-3)


def _dataset(n: int = 40) -> PretrainDataset:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    states = rng.integers(-1, 3, (n, 4))
    return PretrainDataset([pixels], np.zeros(n, int), np.arange(n), states, transform=augmentation(32))


def _student(objective: str = "bce") -> Student:
    torch.manual_seed(0)
    return Student(create_backbone(TINY), build_objective(objective, 32, 4, {}))


def _weights(student: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)


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


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    reference = _student()
    train(reference, _dataset(), CFG, tmp_path / "a", tmp_path / "a.csv", fingerprint="x")

    def kill(step, terms):
        if step == 5:  # after the checkpoint at step 4: step 5's work is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_student(), _dataset(), CFG, tmp_path / "b", tmp_path / "b.csv", fingerprint="x", callback=kill)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 4
    resumed = _student()  # a fresh process: new model, same seed
    summary = train(resumed, _dataset(), CFG, tmp_path / "b", tmp_path / "b.csv", fingerprint="x")
    assert summary["resumed_from"] == 4
    ref, got = _weights(reference), _weights(resumed)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    with open(tmp_path / "b.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    with open(tmp_path / "a.csv") as f:
        assert [r["loss"] for r in csv.DictReader(f)] == [r["loss"] for r in rows]


def test_checkpoint_of_other_config_is_not_resumed(tmp_path):
    train(_student(), _dataset(), CFG, tmp_path / "c", None, fingerprint="one")
    summary = train(_student(), _dataset(), CFG, tmp_path / "c", None, fingerprint="two")
    assert summary["resumed_from"] == 0


class _NanAfter(nn.Module):
    """A real objective whose loss turns NaN from its ``k``-th call (a diverging run)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.inner, self.k, self.calls = build_objective("bce", 32, 4, {}), k, 0

    def forward(self, tokens, pooled, batch):
        self.calls += 1
        out = self.inner(tokens, pooled, batch)
        return {**out, "loss": out["loss"] * float("nan")} if self.calls >= self.k else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    student = Student(create_backbone(TINY), _NanAfter(k=7))  # micro-batch 7 = step 4 (grad_accum 2)
    with pytest.raises(FloatingPointError, match=r"step 3: non-finite loss.*step 2\)"):
        train(student, _dataset(), CFG, tmp_path / "n", tmp_path / "n.csv", fingerprint="x")
    state = torch.load(tmp_path / "n" / "last.pt", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    student = _student("state_classifier")
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2, lr_vit=1e-3, lr_head=1e-3)
    train(student, _dataset(), cfg, os.path.join(out, "ckpt"), None, fingerprint="ddp")
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
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2, lr_vit=1e-3, lr_head=1e-3)
    train(single, _dataset(), cfg, tmp_path / "single", None, fingerprint="one")
    ddp, ref = torch.load(tmp_path / "ddp.pt", weights_only=True), _weights(single)
    for k in ref:
        assert torch.allclose(ddp[k], ref[k], atol=1e-4), k


def _write_inputs(root, n: int = 24, size: int = 32) -> None:
    """A tiny records table (train split) and its image store, built by the real images code."""
    import pandas as pd
    from PIL import Image

    from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
    from vivid_med.imaging import build_store
    from vivid_med.tables import write_records
    from vivid_med.ums import cxr_record, provenance, target_hash, target_text

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        (root / "src").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(root / "src" / f"{i}.png")
        states = {f: [None, "present", "absent", "uncertain"][rng.integers(4)] for f in PRETRAIN_FIELDS}
        rec = cxr_record(states, "PA", provenance())
        rows.append({"dataset": "demo_mimic", "study_id": f"s{i}", "patient_id": f"p{i}", "image_id": f"i{i}",
                     "image_path": f"{i}.png", "view": "PA", "split": "train" if i < n - 4 else "val",
                     "report": None, "ums_json": rec.model_dump_json(),
                     "target_hash": target_hash(target_text(rec, PRETRAIN_FIELDS)),
                     **{f: states.get(f) for f in FIELDS}})
    records = pd.DataFrame(rows)
    write_records(records, root / "data/records/demo_mimic.parquet", PRETRAIN_FIELDS)
    build_store(records, root / "src", root / "data/images/demo_mimic", size)


def _write_cache(root) -> None:
    """The real teacher cache (tiny random Llama) for the records' targets: data/teacher/pretrained/."""
    from vivid_med.fields import PRETRAIN_FIELDS
    from vivid_med.teacher.cache import build_cache, distinct_targets
    from vivid_med.teacher.convert import write_tiny
    from vivid_med.teacher.embed import Embedder
    from vivid_med.teacher.load import load_teacher

    folder = write_tiny(root / "tiny", layers=2)
    embedder = Embedder(load_teacher(folder, layer=2), "name_state", "chat", PRETRAIN_FIELDS)
    targets = distinct_targets([root / "data/records/demo_mimic.parquet"], PRETRAIN_FIELDS)
    build_cache(embedder, targets, root / "data/teacher/pretrained", root / "work", progress=False)


def _common(**kw) -> dict:
    return {"seed": 0, "datasets": ["demo_mimic"], "model": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8,
              "in_chans": 1, "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}, "pretrained": False,
              "steps": 3, "batch_size": 8, "grad_accum": 1, "lr_vit": 1e-3, "lr_head": 1e-3, "warmup_steps": 1,
              "checkpoint_every": 2, **kw}


def test_stage_trains_exports_and_reruns_from_checkpoint(tmp_path, monkeypatch):
    import json

    import yaml

    from stages import pretrain as stage
    from vivid_med.fields import PRETRAIN_FIELDS
    from vivid_med.student import load_backbone, load_student

    _write_inputs(tmp_path)
    common = _common()
    vivid = {"objective": "vivid", "teacher": "pretrained", "spd": {"groups": 2, "queries": 2, "heads": 2},
             "orth_weight": 0.02, "answerability_mask": True}
    params = {"pretrain": {"fields": list(PRETRAIN_FIELDS), "objectives": ["bce", "random_init"], "export": "bce",
                           "common": common, "runs": {"bce": {"objective": "bce"}, "random_init": {"objective": "none"},
                                                      "vivid": vivid}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    stage.main(["bce"])
    stage.main(["random_init"])
    _write_cache(tmp_path)
    stage.main(["vivid"])
    assert load_student(tmp_path / "models/vivid").spd is not None
    assert "orth" in json.loads((tmp_path / "metrics/pretrain/vivid.json").read_text())["final"]
    with pytest.raises(KeyError, match="no run 'nope'"):
        stage.main(["nope"])
    m = json.loads((tmp_path / "metrics/pretrain/bce.json").read_text())
    assert m["steps"] == 3 and m["n_train"] == 20 and m["n_params"] > 0
    assert json.loads((tmp_path / "metrics/pretrain/random_init.json").read_text())["steps"] == 0
    trained, untrained = load_backbone(tmp_path / "models/bce"), load_backbone(tmp_path / "models/random_init")
    x = torch.zeros(1, 1, 32, 32)
    assert not torch.equal(trained.forward_features(x), untrained.forward_features(x))
    # a rerun with the same params finds the finished checkpoint: no step is trained again, same export
    before = (tmp_path / "models/bce/backbone.safetensors").read_bytes()
    stage.main(["bce"])
    again = json.loads((tmp_path / "metrics/pretrain/bce.json").read_text())
    assert json.loads((tmp_path / "metrics/timing/pretrain_bce.json").read_text())["resumed_from"] == 3
    assert again == m, "a resumed run must give the same metrics"

    assert (tmp_path / "models/bce/backbone.safetensors").read_bytes() == before


@pytest.mark.slow
def test_stage_killed_with_sigkill_resumes_to_the_same_export(tmp_path):
    """A real kill: SIGKILL the stage process after its first checkpoint, rerun it, compare with a clean run."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from vivid_med.fields import PRETRAIN_FIELDS

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}
    for name in ("clean", "killed"):
        (tmp_path / name).mkdir()
        _write_inputs(tmp_path / name, n=40)
        params = {"pretrain": {"fields": list(PRETRAIN_FIELDS), "common": _common(steps=40, checkpoint_every=5),
                               "runs": {"bce": {"objective": "bce"}}}}
        (tmp_path / name / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "stages.pretrain", "bce"]
    subprocess.run(cmd, cwd=tmp_path / "clean", env=env, check=True, capture_output=True)
    proc = subprocess.Popen(cmd, cwd=tmp_path / "killed", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed/checkpoints/bce/last.pt"
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step < 40, "the kill came too late to test a resume"
    subprocess.run(cmd, cwd=tmp_path / "killed", env=env, check=True, capture_output=True)
    files = [tmp_path / d / "models/bce/backbone.safetensors" for d in ("clean", "killed")]
    assert files[0].read_bytes() == files[1].read_bytes()
