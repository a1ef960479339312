"""The paper preset (params.paper.yaml) through the real stages on CPU: shapes, memory and export at ViT-B/16, 224 px.

A copy of the repository gets the tiny profile (the demo's size), the paper preset on top, and only this shrunk:
2 steps of batch 4, the runs `vivid` and `bce` (with the teacher variant they need), and random init instead of
ImageNet weights (no network here; same architecture). Each stage runs alone (`dvc repro -s`), so its wall time
and peak RSS are measured one by one; the table is printed (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import copy_repo, deep_merge, dvc

pytestmark = pytest.mark.slow

VIT_B16_PARAMS = 85_798_656  # timm vit_base_patch16_224 without its classifier (num_classes=0)
SHRINK = {"pretrain": {"train_runs": ["vivid", "bce"], "export": "vivid",
                       "common": {"steps": 2, "batch_size": 4, "pretrained": False}},
          "teacher": {"variants": ["pretrained"]}}
STAGES = ("demo", "records", "images", "teacher_weights", "teacher@pretrained", "pretrain@vivid", "pretrain@bce",
          "evaluate@vivid", "evaluate@bce", "summarize", "export")
#: Runs `argv` and prints its children's peak RSS (KiB): a fresh parent, so earlier tests do not count.
PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")


def measured_stage(repo: Path, stage: str) -> tuple[float, float]:
    """(wall s, peak RSS GiB of the largest process) of `dvc repro -s STAGE`."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "dvc", "repro", "-s", stage],
                          cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, f"dvc repro -s {stage} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 2**20


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory) -> tuple[Path, dict[str, tuple[float, float]]]:
    repo = copy_repo(tmp_path_factory.mktemp("paper") / "repo", "tiny")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    paper = yaml.safe_load((repo / "params.paper.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_merge(deep_merge(params, paper), SHRINK), sort_keys=False))
    costs = {stage: measured_stage(repo, stage) for stage in STAGES}
    print("\nstage | wall s | peak RSS GiB (paper preset, 2 steps x 4, tiny demo, CPU)")
    for stage, (wall, rss) in costs.items():
        print(f"{stage} | {wall:.1f} | {rss:.2f}")
    print(f"total | {sum(w for w, _ in costs.values()):.1f} | {max(r for _, r in costs.values()):.2f}  "
          f"(load average {os.getloadavg()[0]:.2f})")
    return repo, costs


def test_paper_preset_runs_every_stage_to_an_up_to_date_pipeline(paper_run):
    repo, _ = paper_run
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout
    assert np.load(repo / "data/images/demo_mimic/pixels.npy", mmap_mode="r").shape[1:] == (224, 224)


@pytest.mark.parametrize("run", ["vivid", "bce"])
def test_export_is_a_vit_b16_with_3_channels_that_loads_through_timm(paper_run, run):
    import torch

    from vivid_med.evaluate.features import input_spec
    from vivid_med.student import count_params, load_backbone

    repo, _ = paper_run
    model = load_backbone(repo / "models" / run)
    assert input_spec(model) == (224, 3)
    assert (tuple(model.patch_embed.patch_size), model.num_features, len(model.blocks)) == ((16, 16), 768, 12)
    assert count_params(model) == VIT_B16_PARAMS
    metrics = json.loads((repo / "metrics" / "pretrain" / f"{run}.json").read_text())
    assert metrics["steps"] == 2 and metrics["n_params"] == VIT_B16_PARAMS
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(torch.zeros(2, 3, 224, 224)), pre_logits=True)
    assert feats.shape == (2, 768)


@pytest.mark.parametrize("run", ["vivid", "bce"])
def test_probes_see_768_wide_features(paper_run, run):
    repo, _ = paper_run
    caches = sorted((repo / "data" / "features" / run).glob("*.npz"))
    assert {p.stem for p in caches} >= {"demo_mimic", "demo_nih", "lidc", "organamnist", "organ_nifti"}
    for path in caches:
        with np.load(path) as z:
            assert z["features"].ndim == 2 and z["features"].shape[1] == 768, path.name
    result = json.loads((repo / "metrics" / "eval" / f"{run}.json").read_text())
    assert result["chexpert_paper"]["auc"]["mean"] is not None


def test_product_is_the_vivid_backbone(paper_run):
    from vivid_med.student import load_backbone

    repo, _ = paper_run
    product, vivid = (load_backbone(repo / "models" / d).state_dict() for d in ("product", "vivid"))
    assert product.keys() == vivid.keys() and all(product[k].equal(vivid[k]) for k in product)
