"""The export in timm's format, seen from timm (its own transform gives our input tensor), and the export stage:
the product, its model card (the Hub's front matter, read back by huggingface_hub) and SIGKILLs (#11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from faults import killed, run, snapshot
from helpers import backbone_params
from stages.export import model_card
from vivid_med.decoding import fit
from vivid_med.imaging import STD, to_tensor
from vivid_med.student import SPD, create_backbone, export_student

GREY_LEVEL = 1 / 255 / STD   # one step of an 8-bit pixel after normalisation
SUMMARY = {
    "backbones": {"vivid": {"CheXpert-12 AUC": {"mean": 0.7, "std": 0.01, "n": 2}, "NIH-8 AUC": None,
                            "LIDC AUC": {"mean": None, "std": None, "n": 2},
                            "new column": {"mean": 0.5, "std": 0.0, "n": 2}},
                  "bce": {"CheXpert-12 AUC": {"mean": 0.6, "std": 0.02, "n": 2}}},
    "data": {"chexpert_paper": "demo_mimic: train 10 / val 2 / test 4 images"},
    "synthetic_data": ["demo_mimic"],
}


def _export(folder: Path, in_chans: int = 1, seed: int = 0, objective: str = "vivid") -> torch.nn.Module:
    cfg = backbone_params(in_chans=in_chans)
    torch.manual_seed(seed)
    backbone = create_backbone(cfg).eval()
    heads = torch.nn.Module()
    heads.spd = SPD(backbone.num_features, groups=2, queries=1, heads=2)
    export_student(backbone, heads, folder, cfg, objective)
    return backbone


def _timm_transform(folder: Path):
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    return timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))


def _ours(pixels: np.ndarray, size: int) -> torch.Tensor:
    """vivid-med's path: the images stage's ``fit`` (pad black to a square, area-average), then ``to_tensor``."""
    return to_tensor(fit(pixels.astype(np.float32) / 255.0, size)[None])[0]


def test_timm_transform_gives_our_tensor(tmp_path):
    _export(tmp_path / "gray")
    _export(tmp_path / "rgb", in_chans=3)
    gray, rgb = _timm_transform(tmp_path / "gray"), _timm_transform(tmp_path / "rgb")
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (32, 32), dtype=np.uint8)   # an image at the input size (as in the store)
    ours = to_tensor(stored[None])[0]
    assert torch.equal(gray(Image.fromarray(stored)), ours)   # bit for bit
    assert torch.equal(rgb(Image.fromarray(stored).convert("RGB")), ours.expand(3, -1, -1))
    # larger images: PIL area-averages 8-bit values, we average floats and round: within one grey level
    for shape in [(128, 128), (100, 100), (96, 128), (2000, 2500)]:
        big = rng.integers(0, 256, shape, dtype=np.uint8)
        side = max(shape)
        square = Image.new("L", (side, side), 0)   # timm pads with mid-grey: pad with black first, as we do
        square.paste(Image.fromarray(big), ((side - shape[1]) // 2, (side - shape[0]) // 2))
        assert (gray(square) - _ours(big, 32)).abs().max() <= GREY_LEVEL + 1e-5, shape
    # where it cannot: timm's own padding of a non-square image is the mean, ours is black (documented in the card)
    wide = rng.integers(1, 256, (96, 128), dtype=np.uint8)
    assert abs(gray(Image.fromarray(wide))[0, 0, 0]) < GREY_LEVEL and _ours(wide, 32)[0, 0, 0] == -0.5 / STD


def test_a_killed_export_leaves_the_previous_one(tmp_path):
    _export(tmp_path / "models/r", seed=0)
    before = snapshot(tmp_path / "models/r")
    script = ("import sys; sys.path.insert(0, 'TESTS'); from pathlib import Path; "
              "from test_export import _export; _export(Path('models/r'), seed=1, objective='bce')")
    proc = run(tmp_path, "-c", script.replace("TESTS", str(Path(__file__).parent)), failpoint="commit:r")
    assert killed(proc), proc.stderr[-2000:]
    assert snapshot(tmp_path / "models/r") == before


# --- the export stage -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A scratch project: models/vivid (a tiny export), metrics/summary.json, metrics/pretrain/vivid.json."""
    root = tmp_path_factory.mktemp("project")
    backbone = _export(root / "models/vivid")
    (root / "metrics/pretrain").mkdir(parents=True)
    (root / "metrics/summary.json").write_text(json.dumps(SUMMARY))
    (root / "metrics/pretrain/vivid.json").write_text(json.dumps({"run": "vivid", "synthetic_data": ["demo_mimic"]}))
    return root, backbone


@pytest.fixture
def project(exported, tmp_path) -> Path:
    shutil.copytree(exported[0], tmp_path / "p")
    return tmp_path / "p"


def _stage(project: Path, failpoint: str | None = None):
    return run(project, "-m", "stages.export", "vivid", failpoint=failpoint)


def test_product_loads_through_timm_with_a_hub_card(project, exported):
    proc = _stage(project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    product = project / "models/product"
    assert sorted(p.name for p in product.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    for name in ("config.json", "model.safetensors"):
        assert (product / name).read_bytes() == (project / "models/vivid" / name).read_bytes()
    model = timm.create_model(f"local-dir:{product}", pretrained=True).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), exported[1].forward_features(x))

    text = (product / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert (meta["library_name"], meta["license"], meta["pipeline_tag"]) == (
        "timm", "apache-2.0", "image-feature-extraction")
    assert "synthetic-data" in meta["tags"] and meta["datasets"] == ["demo_mimic"]
    card = ModelCard(text)   # the Hub's own reader
    [result] = card.data.eval_results   # scored and of a known protocol: CheXpert-12 AUC only
    assert (result.metric_type, result.metric_value, result.dataset_type, result.dataset_split) == (
        "roc_auc", 0.7, "demo_mimic", "test")
    assert 'timm.create_model("local-dir:models/product", pretrained=True)' in text
    assert "SYNTHETIC demo data" in text and "`x = (pixel / 255 - 0.5) / 0.25`" in text and "upload_folder" in text
    assert "| new column | 0.5000 ± 0.0000 (n=2) |" in text and "| NIH-8 AUC | n/a |" in text


def test_card_names_real_training_data():
    config = {"architecture": "vit_tiny_patch16_224", "num_features": 32, "model_args": {"patch_size": 8},
              "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.25] * 3,
                                 "interpolation": "box", "crop_pct": 1.0, "crop_mode": "border"}}
    text = model_card("vivid", config, {"objective": "vivid"}, {**SUMMARY, "synthetic_data": []},
                      {"datasets": ["mimic"], "synthetic_data": []}, 10, 40)
    meta = yaml.safe_load(text.split("---\n")[1])
    assert "synthetic-data" not in meta["tags"] and meta["datasets"][0] == "mimic"
    assert "Trained on real data: mimic" in text and "data-use agreements" in text
    assert 'convert("RGB")' in text and "[0.5, 0.5, 0.5]" in text
    unknown = model_card("vivid", config, {"objective": "vivid"}, SUMMARY, {"synthetic_data": []}, 10, 40)
    assert "Training data not recorded" in unknown and "synthetic-data" not in unknown.split("---\n")[1]


@pytest.mark.parametrize("failpoint", ["export:copied", "commit:product"])
def test_a_killed_stage_leaves_the_previous_product_or_none(project, failpoint):
    product = project / "models/product"
    assert killed(_stage(project, failpoint))
    assert not product.exists()   # a first export killed: no product at all, never a partial one
    assert _stage(project).returncode == 0
    before = snapshot(product)
    summary = {**SUMMARY, "backbones": {"vivid": {"CheXpert-12 AUC": {"mean": 0.9, "std": 0.0, "n": 2}}}}
    (project / "metrics/summary.json").write_text(json.dumps(summary))
    assert killed(_stage(project, failpoint))
    assert snapshot(product) == before   # the previous product, whole
    assert _stage(project).returncode == 0
    assert "value: 0.9" in (product / "README.md").read_text()
