"""Linear probes on real public images (../shared/data): NIH 14-label, pediatric pneumonia, MedMNIST.

Backbones: every exported run in models/ (the demo-pretrained ones) and a random-init ViT.
Run: `make test-realdata` or `pytest -m realdata -s tests/test_realdata_probes.py` (prints the table;
set VIVID_REALDATA_OUT=path.json to keep the numbers, VIVID_REALDATA_BACKBONES=vivid,bce to choose backbones).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import section

from vivid_med.evaluate.features import extract
from vivid_med.evaluate.probes import ProbeParams
from vivid_med.evaluate.protocols import ProbeData, run_probe
from vivid_med.sources import ImageSet, open_dataset, parse_dataset

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
RESULTS: dict[str, dict] = {}
#: The random-init reference of docs/evaluation.md's table: ViT-Tiny (12 blocks), 64 px, patch 8, one channel.
RANDOM_INIT = {"model": "vit_tiny_patch16_224", "img_size": 64, "patch_size": 8, "in_chans": 1, "kwargs": {},
               "pretrained": False}


@pytest.fixture(scope="module")
def backbones() -> dict[str, torch.nn.Module]:
    from vivid_med.student.backbone import BackboneParams, create_backbone
    from vivid_med.student.export import load_backbone

    chosen = os.environ.get("VIVID_REALDATA_BACKBONES")  # e.g. "vivid,bce,random_init"; default: every run
    runs = [p for p in sorted((REPO / "models").glob("*")) if (p / "config.json").exists() and p.name != "product"]
    out = {p.name: load_backbone(p) for p in runs if not chosen or p.name in chosen.split(",")}
    torch.manual_seed(0)
    out.setdefault("random_init", create_backbone(BackboneParams(**RANDOM_INIT)).eval())
    return out


#: Each real set as an ``evaluate.image_sets`` entry would name it (roots relative to ../shared/data).
SPECS: dict[str, dict] = {
    "nih_cxr14_1000_64px": {"kind": "nih_png", "root": "nih_cxr14_1000_64px"},
    "kermany_pneumonia_224": {"kind": "kermany", "root": "kermany_pneumonia_224"},
    **{name: {"kind": "medmnist", "root": f"medmnist/{name}.npz"}
       for name in ("pneumoniamnist_kaggle_variant", "pneumoniamnist_balanced_subset", "breastmnist")},
}


def _load(name: str, shared: Path) -> ImageSet:
    spec = {**SPECS[name], "root": str(shared / SPECS[name]["root"])}
    return open_dataset(parse_dataset(spec, "image_set", f"evaluate.image_sets.{name}")).image_set()


@pytest.mark.parametrize("name", list(SPECS))
def test_probe_on_real_images(shared_data, backbones, name):
    s = _load(name, shared_data)
    for split in ("train", "val", "test"):
        assert (s.splits == split).sum() > 0, f"{name}: empty {split} split"
    for bname, model in backbones.items():
        data = ProbeData(name, extract(model, s.images, 128, desc=f"{name}/{bname}"), s.labels, s.patient_ids,
                         s.splits, tuple(s.class_names), s.multilabel)
        m = run_probe(data, SEEDS, ProbeParams.model_validate(section("evaluate")["probe"])).metrics
        RESULTS.setdefault(name, {})[bname] = {"data": data.describe(), **{
            k: m[k] for k in ("auc", "auc_n_fields", "f1", "accuracy", "macro_f1", "auc_n_classes") if k in m}}
        auc = m["auc"]["mean"]
        print(f"\n{name} | {bname} | AUC {auc:.3f} ± {m['auc']['std']:.3f}", {k: v for k, v in m.items()
              if k in ("auc_n_fields", "auc_n_classes")}, data.describe())
        assert 0.0 <= auc <= 1.0 and m["auc"]["n"] == len(SEEDS)
        if name == "kermany_pneumonia_224":
            assert auc > 0.75  # pneumonia is visible even to a random-init ViT's features at 64 px
    if os.environ.get("VIVID_REALDATA_OUT"):
        Path(os.environ["VIVID_REALDATA_OUT"]).write_text(json.dumps(RESULTS, indent=1, sort_keys=True))


def test_nih_resplit_has_no_patient_in_two_splits(shared_data):
    s = _load("nih_cxr14_1000_64px", shared_data)  # ImageSet refuses leakage on construction
    assert s.images.shape == (1000, 64, 64) and s.labels.shape == (1000, 14)
    assert np.all(np.nansum(s.labels, 0) > 0)  # every one of the 14 NIH labels occurs
