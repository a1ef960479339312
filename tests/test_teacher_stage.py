"""Stage `teacher@<variant>` end to end in a scratch project (tiny teacher), and its torchrun sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import write_params, write_runtime
from vivid_med.fields import PRETRAIN_FIELDS
from vivid_med.tables import write_records
from vivid_med.teacher.cache import load_cache
from tiny_teacher import write_tiny
from test_teacher import make_records, records_frame

REPO = Path(__file__).resolve().parents[1]
N_TARGETS = 10


def project(root: Path, processes: int = 1) -> Path:
    """A scratch project: params.yaml (teacher section), models/teacher/tiny, data/records/demo.parquet."""
    write_tiny(root / "models/teacher/tiny", layers=3)
    write_params(root, teacher={"model": "tiny", "variants": ["pretrained", "random"], "layer": 2})
    write_runtime(root / "runtime.yaml", teacher={"batch_size": 4, "device": "cpu", "processes": processes})
    records = make_records(N_TARGETS) * 2  # every target twice: 20 images, 10 distinct targets
    write_records(records_frame(records), root / "data/records/demo.parquet", PRETRAIN_FIELDS)
    return root


def run_stage(root: Path, variant: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "stages.teacher", variant], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / f"metrics/teacher/{variant}.json").read_text())


def run_in_process(root: Path, variant: str, monkeypatch) -> dict:
    from stages import teacher

    monkeypatch.chdir(root)
    assert teacher.main([variant]) == 0
    return json.loads((root / f"metrics/teacher/{variant}.json").read_text())


def test_stage_writes_cache_and_resumes(tmp_path, monkeypatch):
    root = project(tmp_path)
    first = run_in_process(root, "pretrained", monkeypatch)
    assert first["n_targets"] == N_TARGETS and first["forward_passes"] == N_TARGETS + 36
    cache = load_cache(root / "data/teacher/pretrained", expect={"variant": "pretrained"})
    assert cache.targets.shape == (N_TARGETS, 64)
    run_in_process(root, "pretrained", monkeypatch)  # finished batches persist in data/teacher_work: only prototypes rerun
    again = json.loads((root / "metrics/timing/teacher_pretrained.json").read_text())
    assert again["forward_passes_this_run"] == 36
    torch.testing.assert_close(load_cache(root / "data/teacher/pretrained").targets, cache.targets)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    one = project(tmp_path / "one")
    two = project(tmp_path / "two", processes=2)
    run_stage(one, "random")
    m = run_stage(two, "random")
    assert m["forward_passes"] == N_TARGETS + 36
    assert json.loads((two / "metrics/timing/teacher_random.json").read_text())["processes"] == 2
    assert "processes" not in json.loads((two / "data/teacher/random/manifest.json").read_text())  # a runtime fact
    a, b = load_cache(one / "data/teacher/random"), load_cache(two / "data/teacher/random")
    assert a.target_hashes == b.target_hashes and a.manifest["fingerprint"] == b.manifest["fingerprint"]
    torch.testing.assert_close(a.targets, b.targets, atol=1e-5, rtol=1e-4)
