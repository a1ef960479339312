"""The evaluate and summarize stages end to end on a tiny on-disk pipeline (records, image store, backbone)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from torch import nn

from helpers import backbone_params, section, write_params
from vivid_med.evaluate import EvaluateParams
from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
from vivid_med.imaging import build_store
from vivid_med.params import ParamsError, validate_section
from vivid_med.student.backbone import create_backbone
from vivid_med.student.export import export_student
from vivid_med.student.spd import SPDParams, build_spd
from vivid_med.tables import read_records, write_records

PARAMS = {
    "source": "src", "target": "tgt", "views": ["PA", "AP"], "probe_seeds": [0, 1], "select_on": "val",
    "label_fractions": [0.1, 1.0], "uncertain_policy": {"edema": "ones"},
    "probe": {"weight_decays": [1.0e-3], "lr": 1.0e-2, "max_epochs": 15, "patience": 5, "batch_size": 64},
    "image_sets": {"organamnist": {"kind": "medmnist", "root": "organ.npz"}},
    "plots": {"tsne_points": 40, "attention_examples": 2},
}


def _write_dataset(root: Path, name: str, n_patients: int, rng: np.random.Generator) -> pd.DataFrame:
    """Records (RECORDS_SCHEMA) + PNGs decoded into the image store; cardiomegaly brightens the image."""
    rows, img_dir = [], root / "raw" / name
    img_dir.mkdir(parents=True)
    for p in range(n_patients):
        split = "train" if p < 0.6 * n_patients else "val" if p < 0.8 * n_patients else "test"
        for k in range(2):
            states = rng.choice(np.array(["present", "absent", "uncertain", None], dtype=object), size=len(FIELDS),
                                p=[0.3, 0.4, 0.1, 0.2])
            states[1] = "present" if rng.random() < 0.4 else "absent"  # every field has both classes
            img = rng.normal(80 + 90 * (states[2] == "present"), 20, (32, 32))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(img_dir / f"{p}_{k}.png")
            rows.append({"dataset": name, "study_id": f"s{p}_{k}", "patient_id": f"p{p}", "image_id": f"{name}{p}_{k}",
                         "image_path": f"{p}_{k}.png", "view": "LAT" if k and p % 5 == 0 else "PA", "split": split,
                         "report": None, "ums_json": "{}", "target_hash": "0" * 64, **dict(zip(FIELDS, states))})
    df = pd.DataFrame(rows)
    write_records(df, root / "data/records" / f"{name}.parquet", PRETRAIN_FIELDS)
    build_store(df, img_dir, root / "data/images" / name, size=32)
    return df


def make_project(root: Path) -> Path:
    """A project in ``root`` ready for ``evaluate@tiny``: records and image stores of src / tgt, an OrganAMNIST-like
    set, a 2-block ViT with SPD heads in models/tiny, and params.yaml with ``PARAMS``."""
    rng = np.random.default_rng(0)
    _write_dataset(root, "src", 60, rng)
    _write_dataset(root, "tgt", 20, rng)
    imgs = {s: rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 66), ("val", 22), ("test", 33))}
    labels = {s: np.arange(len(v)) % 11 for s, v in imgs.items()}
    for s in imgs:  # class-dependent brightness so the probe has something to find
        imgs[s] = np.clip(imgs[s] // 4 + 20 * labels[s][:, None, None], 0, 255).astype(np.uint8)
    np.savez(root / "organ.npz", **{f"{s}_images": v for s, v in imgs.items()},
             **{f"{s}_labels": labels[s][:, None] for s in imgs})
    cfg = backbone_params(kwargs={"depth": 2})
    backbone = create_backbone(cfg)
    spd = build_spd(backbone.num_features, SPDParams(groups=2, queries=2, heads=4))
    export_student(backbone, nn.ModuleDict({"spd": spd}), root / "models/tiny", cfg, "vivid")
    write_project_params(root, PARAMS)
    return root


def write_project_params(root: Path, evaluate: dict) -> None:
    """params.yaml of the scratch project: ``evaluate``, and ``tiny`` as the one trained run."""
    runs = {"tiny": section("pretrain")["runs"]["vivid"]}
    write_params(root, replace={"evaluate": evaluate}, pretrain={"train_runs": ["tiny"], "export": "tiny", "runs": runs})


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(make_project(tmp_path))
    return tmp_path


def _run(params: dict | None = None) -> dict:
    """The stage on models/tiny; returns its detail (metrics/eval/detail/tiny.json)."""
    from stages import evaluate

    if params is not None:
        write_project_params(Path("."), params)
    evaluate.main(["tiny"])
    return json.loads(Path("metrics/eval/detail/tiny.json").read_text())


def _leaves(obj: dict, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of every leaf of a nested dict."""
    out: dict[str, object] = {}
    for k, v in obj.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_predictions_of_every_protocol_give_the_reported_auc(workdir):
    """The saved test predictions (every probe seed) reproduce each protocol's mean AUC: what the seed study's
    paired bootstrap resamples."""
    from vivid_med.evaluate.paired import Predictions, macro_auc

    _run()
    m = json.loads(Path("metrics/eval/detail/tiny.json").read_text())
    for name, auc in (("chexpert_paper", m["chexpert_paper"]["auc"]["mean"]), ("nih8", m["nih8"]["auc"]["mean"]),
                      ("chexpert_standard_pct10", m["chexpert_standard"]["pct10"]["auc"]["mean"]),
                      ("organamnist", m["organamnist"]["auc"]["mean"])):
        with np.load(f"data/features/tiny/predictions/{name}.npz") as z:
            pred = Predictions(z["labels"], z["patient_ids"], z["scores"])
        assert pred.scores.shape[0] == 2  # probe seeds
        assert macro_auc(pred, np.ones((1, len(pred.labels))))[0] == pytest.approx(auc, abs=2e-4), name


def test_evaluate_and_summarize_end_to_end(workdir):
    from stages import summarize

    m = _run()
    paper = m["chexpert_paper"]
    assert paper["n_report_fields"] == 12 and set(paper["auc"]["values"]) == {"seed0", "seed1"}
    assert paper["per_field_auc"]["cardiomegaly"]["mean"] > 0.8  # the planted signal
    assert set(m["chexpert_standard"]) == {"pct10", "pct100"}
    assert m["nih8"]["n_report_fields"] == 8 and 0 <= m["nih8"]["auc"]["mean"] <= 1
    assert m["organamnist"]["auc_n_classes"] == 11 and m["organamnist"]["accuracy"]["mean"] > 0.2
    assert "src: train" in m["data"]["chexpert_paper"]
    first = Path("metrics/eval/tiny.json").read_bytes()
    lean = json.loads(first)
    assert set(lean) == {"chexpert_paper", "chexpert_standard", "nih8", "organamnist", "synthetic_data"}
    numbers, detail_numbers = _leaves(lean), _leaves(m)
    del numbers["synthetic_data"]
    assert len(numbers) == 2 * (2 + 2 + 1 + 2) and all(k.endswith((".mean", ".std")) for k in numbers)
    assert all(v == detail_numbers[k] for k, v in numbers.items())  # the headline: the detail's numbers, unchanged
    assert Path("data/features/tiny/src.npz").exists()
    assert set(pd.read_csv("data/features/tiny/plots/roc_chexpert_paper.csv")["field"]) <= set(PRETRAIN_FIELDS)
    with np.load("data/features/tiny/plots/attention.npz") as z:
        assert z["maps"].shape == (2, 2, 4, 4)  # 2 examples x 2 SPD groups x the 4x4 patch grid
    emb = pd.read_csv("data/features/tiny/plots/embedding.csv")
    assert set(emb["finding"]) <= set(PRETRAIN_FIELDS) | {"none", "multiple", "unlabelled"} and len(emb) == 22
    detail = Path("metrics/eval/detail/tiny.json").read_bytes()
    _run()
    assert Path("metrics/eval/tiny.json").read_bytes() == first  # same params -> same bytes
    assert Path("metrics/eval/detail/tiny.json").read_bytes() == detail

    Path("metrics/eval/dropped.json").write_text("{}")  # a run no longer in train_runs: left behind, not summarized
    summarize.main([])
    md = Path("metrics/summary.md").read_text()
    assert "dropped" not in md
    assert "| tiny |" in md and "CheXpert-12 AUC" in md and "organamnist" in md
    summary = json.loads(Path("metrics/summary.json").read_text())
    assert summary["backbones"]["tiny"]["CheXpert-12 AUC"] == {**lean["chexpert_paper"]["auc"], "n": 2}
    for png in ("per_field_auc.png", "roc_chexpert_paper_tiny.png", "roc_chexpert_paper.png", "roc_nih8.png",
                "tsne_tiny.png", "attention_tiny.png"):
        assert Path("metrics/plots", png).stat().st_size > 1000
    bars = pd.read_csv("metrics/plots/per_field_auc.csv")
    assert list(bars.columns) == ["finding", "backbone", "auc"] and len(bars) == 12
    roc = pd.read_csv("metrics/plots/roc_chexpert_paper.csv")
    assert list(roc.columns) == ["backbone", "fpr", "tpr"] and set(roc["backbone"]) == {"tiny"}


@pytest.mark.parametrize("key,value,message", [
    ("select_on", "test", "select_on: probes select hyper-parameters on 'val' only.*test split leaks"),
    ("probe_seeds", [], "probe_seeds: List should have at least 1 item"),
    ("label_fractions", [0.0], "label_fractions.0: Input should be greater than 0"),
    ("uncertain_policy", {"edema": "maybe"}, "uncertain_policy.dict.*edema: Input should be 'ignore', 'ones' or 'zeros'"),
    ("uncertain_policy", {"oedema": "ones"}, "unknown finding.*oedema"),
    ("probe", {**PARAMS["probe"], "max_epochs": -1}, "probe.max_epochs: Input should be greater than or equal to 1"),
    ("image_sets", {"x": {"kind": "lidc", "root": "r", "fractions": "half"}}, "image_sets.x.fractions"),
    ("image_sets", {"x": {"kind": "nope", "root": "r"}}, "image_sets.x.kind.*nope"),
])
def test_bad_evaluate_params_name_the_key_before_any_work(key, value, message):
    with pytest.raises(ParamsError, match=message):
        validate_section(EvaluateParams, {**PARAMS, key: value}, "evaluate")


def test_patient_in_two_splits_stops_the_stage(workdir):
    df = read_records("data/records/src.parquet")
    df.loc[df.index[-1], "patient_id"] = df.loc[0, "patient_id"]  # a test image of a train patient
    write_records(df, "data/records/src.parquet", PRETRAIN_FIELDS)
    with pytest.raises(ValueError, match="leakage"):
        _run()
