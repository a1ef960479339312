"""The seed study (`make study`, benchmarks/study.py) end to end at the tiny profile's sizes, without real data:
every backbone x pretraining seed is trained and evaluated, the tables cover each of them, the paired intervals
are consistent, and a rerun resumes (nothing retrained) with byte-identical results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import REPO, dvc

pytestmark = pytest.mark.slow

BACKBONES = {"vivid", "state_classifier", "bce", "vivid_random", "vivid_no_spd", "random_init", "vivid_minilm"}
#: The study's protocols at tiny sizes: the tiny profile has no 1% label fraction, the real sets need ../shared/data.
PROTOCOLS = {"chexpert_paper", "nih8"}


def run_study(work: Path, out: Path) -> None:
    env = dict(os.environ, VIVID_SHARED_DATA=str(work / "no-shared-data"))  # the demo protocols only
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "study.py"), "--tiny", "--work", str(work),
                    "--out", str(out)], env=env, check=True, capture_output=True)


def test_tiny_study_covers_every_backbone_and_seed_and_resumes(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    run_study(work, out)
    study = json.loads((out / "study.json").read_text())
    assert study["seeds"] == [0, 1, 2]
    assert set(study["backbones"]) == BACKBONES
    for name, row in study["backbones"].items():
        assert set(row) == PROTOCOLS, name
        for protocol, cell in row.items():
            assert len(cell["seeds"]) == 3 and all(0.0 <= a <= 1.0 for a in cell["seeds"]), (name, protocol)
            assert cell["mean"] == pytest.approx(np.mean(cell["seeds"]))
            assert cell["std"] == pytest.approx(np.std(cell["seeds"], ddof=1))
    # Each backbone against bce, state_classifier, vivid_random and vivid, each pair once: 6 + 5 + 4 + 3 pairs.
    paired = json.loads((out / "paired.json").read_text())
    pairs = {frozenset(key.split(" | ")[0].split(" - ")) for key in paired}
    assert len(pairs) == 18 and len(paired) == 18 * len(PROTOCOLS)
    assert all(r["ci95"][0] <= r["difference"] <= r["ci95"][1] for r in paired.values())
    assert json.loads((out / "semantics.json").read_text()) == {
        "skipped": f"{work / 'no-shared-data' / 'nih_cxr14_labels'} is absent"}

    # Different pretraining seeds give different backbones (the seed reaches the run), random_init included.
    for name in ("vivid", "random_init"):
        assert len(set(study["backbones"][name]["chexpert_paper"]["seeds"])) > 1, name

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = {p: p.stat().st_mtime_ns for p in work.glob("*/data/features/*/predictions/*.npz") if p.stem in PROTOCOLS}
    assert len(written) == 7 * 3 * len(PROTOCOLS)
    run_study(work, out)  # resumes: no stage reruns (its outputs would be rewritten), the statistics are seeded
    assert {p: p.stat().st_mtime_ns for p in written} == written
    for arm in ("smollm2", "minilm"):
        assert "up to date" in dvc(work / arm, "status").stdout.lower(), arm
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
