"""The synthetic demo cohort: determinism, report/label agreement, co-occurrence, splits, layouts, validation."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from helpers import deep_merge, section
from pydantic import ValidationError

from vivid_med.demo import DemoConfig, build_demo
from vivid_med.demo.cohort import draw_patient_splits, sample_cohort
from vivid_med.demo.layouts import CHEXPERT_COLUMNS, MIMIC_METADATA_COLUMNS, NIH_LABEL_OF_FIELD
from vivid_med.demo.reports import PATTERNS
from vivid_med.fields import KEY_OF_DISPLAY
from vivid_med.params import ParamsError

#: params.yaml's demo section, smaller (everything else as in params.yaml, where the values live).
SMALL = section("demo", seed=0,
                mimic={"n_patients": 40, "studies_per_patient": [1, 3], "lateral_fraction": 0.3, "image_size": 32},
                nih={"n_patients": 20, "image_size": 32},
                lidc={"n_patients": 1, "slices": 8, "matrix": 32},
                organ={"n_per_class": 4, "image_size": 28, "n_nifti_cases": 1})
REPO = Path(__file__).resolve().parents[1]
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
# Cue words of this test (independent of the writer's templates): hedges are checked before negations.
HEDGE = re.compile(r"possible|possibly|cannot exclude|cannot be excluded|may represent|borderline")
NEGATION = re.compile(r"\bno\b|\bnot\b|without|normal|clear")
STATE = {1.0: "present", 0.0: "absent", -1.0: "uncertain"}


def _build(root: Path, seed: int) -> Path:
    out = root / f"demo_{seed}_{len(list(root.iterdir()))}"
    build_demo(out, DemoConfig.model_validate({**SMALL, "seed": seed}))
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("demo"), 0)


def test_same_seed_byte_identical_other_seed_differs(demo, tmp_path):
    first = _hashes(demo)
    assert len(first) > 100 and any(k.endswith(".jpg") for k in first) and any(k.endswith(".dcm") for k in first)
    again = tmp_path / "again"  # another process, another hash seed: nothing may depend on either
    code = ("import json, sys; from pathlib import Path; from vivid_med.demo import DemoConfig, build_demo; "
            "build_demo(Path(sys.argv[1]), DemoConfig.model_validate(json.loads(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, str(again), json.dumps(SMALL)], check=True, cwd=REPO,
                   capture_output=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert _hashes(again) == first
    other = _hashes(_build(tmp_path, 1))
    changed = {k for k in first.keys() & other.keys() if first[k] != other[k]}
    assert len(changed) > 0.5 * len(first.keys() & other.keys())


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=\.)\s+", " ".join(text.lower().split()))


def test_labels_say_what_the_report_says(demo):
    mimic = demo / "mimic"
    labels = pd.read_csv(mimic / "mimic-cxr-2.0.0-chexpert.csv")
    n_sections = {"both": 0, "one": 0}
    for row in labels.itertuples(index=False):
        row = dict(zip(labels.columns, row))
        subject, study = row["subject_id"], row["study_id"]
        text = (mimic / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt").read_text()
        assert "___" in text
        has = ("FINDINGS:" in text, "IMPRESSION:" in text)
        assert any(has)
        n_sections["both" if all(has) else "one"] += 1
        sentences = _sentences(text)
        said = {}
        for column in CHEXPERT_COLUMNS:
            if column == "No Finding":
                continue
            key = KEY_OF_DISPLAY[column]
            classes = {"uncertain" if HEDGE.search(s) else "absent" if NEGATION.search(s) else "present"
                       for s in sentences if re.search(PATTERNS[key], s)}
            value = row[column]
            expected = set() if pd.isna(value) else {STATE[value]}
            assert classes == expected, f"study {study} {column}: label {value}, text says {classes}"
            said[key] = expected
        abnormal = any(v & {"present", "uncertain"} for k, v in said.items() if k != "support_devices")
        assert (row["No Finding"] == 1.0) == (not abnormal) and (abnormal == pd.isna(row["No Finding"]))
        if not abnormal and "IMPRESSION:" in text:
            assert "no acute" in " ".join(text.lower().split())
    assert n_sections["both"] > 0 and n_sections["one"] > 0
    values = labels[[c for c in CHEXPERT_COLUMNS if c != "No Finding"]].to_numpy()
    unmentioned = np.isnan(values).mean()
    assert 0.5 <= unmentioned <= 0.7, unmentioned
    assert (values == -1.0).any() and (values == 0.0).any() and (values == 1.0).any()


def test_findings_co_occur_clinically():
    studies = sample_cohort(4000, [1, 1], section("demo")["prevalence"], {"test": 0.2}, 0.0, np.random.default_rng(0))
    df = pd.DataFrame([s.findings for s in studies]).astype(bool)
    assert df.loc[df.edema, "pleural_effusion"].mean() > df.pleural_effusion.mean() + 0.1
    assert df.loc[df.edema, "cardiomegaly"].mean() > df.cardiomegaly.mean() + 0.1
    assert df.loc[df.pneumonia, "consolidation"].mean() > df.consolidation.mean() + 0.2
    assert df.loc[df.consolidation | df.pneumonia, "lung_opacity"].all()
    acuity = np.array([s.acuity for s in studies])
    assert df.support_devices[acuity > 0.6].mean() > 2 * df.support_devices[acuity < 0.3].mean()
    for rare in ("fracture", "pneumonia", "lung_lesion"):
        assert 0.01 < df[rare].mean() < 0.15, rare


def test_patients_never_cross_splits(demo):
    split = pd.read_csv(demo / "mimic" / "mimic-cxr-2.0.0-split.csv")
    assert set(split.split) == {"train", "validate", "test"}
    assert (split.groupby("subject_id").split.nunique() == 1).all()
    nih = pd.read_csv(demo / "nih" / "Data_Entry_2017.csv")
    lists = {name: (demo / "nih" / name).read_text().split() for name in ("train_val_list.txt", "test_list.txt")}
    assert sorted(sum(lists.values(), [])) == sorted(nih["Image Index"])
    patient = dict(zip(nih["Image Index"], nih["Patient ID"]))
    assert lists["test_list.txt"]
    assert not {patient[i] for i in lists["test_list.txt"]} & {patient[i] for i in lists["train_val_list.txt"]}


def test_layouts_have_the_official_columns(demo):
    mimic = demo / "mimic"
    meta = pd.read_csv(mimic / "mimic-cxr-2.0.0-metadata.csv")
    assert list(meta.columns) == list(MIMIC_METADATA_COLUMNS)
    assert set(meta.ViewPosition) <= {"PA", "AP", "LATERAL"} and "LATERAL" in set(meta.ViewPosition)
    assert meta.subject_id.astype(str).str.fullmatch(r"1\d{7}").all()
    assert meta.study_id.astype(str).str.fullmatch(r"5\d{7}").all()
    assert meta.dicom_id.str.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}").all() and meta.dicom_id.is_unique
    labels = pd.read_csv(mimic / "mimic-cxr-2.0.0-chexpert.csv")
    assert list(labels.columns) == ["subject_id", "study_id", *CHEXPERT_COLUMNS] and len(CHEXPERT_COLUMNS) == 14
    values = labels[list(CHEXPERT_COLUMNS)].to_numpy().ravel()
    assert set(values[~np.isnan(values)]) <= {1.0, 0.0, -1.0}
    assert list(pd.read_csv(mimic / "mimic-cxr-2.0.0-split.csv").columns) == ["dicom_id", "study_id", "subject_id",
                                                                             "split"]
    truth = pd.read_csv(mimic / "truth.csv")
    assert len(truth) == len(labels) and set(truth.study_id) == set(labels.study_id)
    for row in meta.itertuples():
        path = mimic / "files" / f"p{str(row.subject_id)[:2]}" / f"p{row.subject_id}" / f"s{row.study_id}"
        assert (path.parent / f"s{row.study_id}.txt").is_file()
        with Image.open(path / f"{row.dicom_id}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "L" and im.size == (row.Columns, row.Rows)
    nih = pd.read_csv(demo / "nih" / "Data_Entry_2017.csv")
    assert list(nih.columns) == NIH_COLUMNS
    assert nih["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()
    names = {t for labels in nih["Finding Labels"] for t in labels.split("|")}
    assert names <= set(NIH_LABEL_OF_FIELD.values()) | {"Mass", "Nodule", "No Finding"}
    with Image.open(demo / "nih" / "images" / nih["Image Index"][0]) as im:
        assert im.format == "PNG" and im.size == (32, 32)
    assert "SYNTHETIC" in (demo / "README.md").read_text()


@pytest.mark.realdata
def test_nih_header_matches_the_real_table(demo, shared_data):
    with gzip.open(shared_data / "nih_cxr14_labels" / "Data_Entry_2017_v2020.csv.gz", "rt") as fh:
        real = fh.readline().strip()
    assert (demo / "nih" / "Data_Entry_2017.csv").read_text().splitlines()[0] == real


@pytest.mark.parametrize("patch, key", [
    ({"prevalence": {"not_a_finding": 0.1}}, "prevalence.not_a_finding"),
    ({"prevalence": {"edema": 1.5}}, "prevalence.edema"),
    ({"mimic": {"n_patients": -3}}, "mimic.n_patients"),
    ({"nih": {"image_size": 0}}, "nih.image_size"),
    ({"mimic": {"studies_per_patient": [3, 1]}}, "mimic.studies_per_patient"),
    ({"lidc": {"slices": 7}}, "lidc.slices"),
    ({"organ": {"n_per_class": 3}}, "organ.n_per_class"),
    ({"mimic": {"n_patient": 3}}, "mimic.n_patient"),
])
def test_bad_params_fail_before_work_naming_the_key(patch, key, tmp_path, monkeypatch):
    with pytest.raises(ValidationError, match=re.escape(key)):
        DemoConfig.model_validate(section("demo", **patch))
    from stages import demo as stage

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"demo": deep_merge(SMALL, patch)}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=re.escape(f"demo.{key}")):
        stage.main([])
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("part, key", [("mimic", "n_patients"), ("prevalence", "edema"), ("nih", "prevalence")])
def test_no_defaults_every_key_comes_from_params(part, key):
    partial = section("demo")
    partial[part] = {k: v for k, v in partial[part].items() if k != key}
    with pytest.raises(ValidationError, match=re.escape(f"{part}.{key}") + r"\n  Field required"):
        DemoConfig.model_validate(partial)


def test_patient_splits_keep_every_split():
    rng = np.random.default_rng(0)
    splits = draw_patient_splits(3, {"test": 0.01, "validate": 0.01}, rng)
    assert sorted(splits) == ["test", "train", "validate"]
    assert draw_patient_splits(10, {"test": 0.2}, np.random.default_rng(1)).count("test") == 2


def test_refuses_a_non_empty_output(tmp_path):
    (tmp_path / "stale.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        build_demo(tmp_path, DemoConfig.model_validate(SMALL))
