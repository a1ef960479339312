"""Chest X-ray record sources on fixtures in each dataset's real layout (and on real NIH labels when present)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vivid_med.fields import FIELDS
from vivid_med.sources import DATASETS, SourceRows
from vivid_med.states import NULL_CODE, STATE_OF_CODE, State

FX = Path(__file__).parent / "fixtures"


def rows(kind: str, root: Path, **options) -> SourceRows:
    return DATASETS[kind].at(root, **options).records()


def states(src, i):
    return {f: STATE_OF_CODE[c] for f, c in zip(FIELDS, src.labels[i]) if c != NULL_CODE}


def test_chexpert_layout():
    src = rows("chexpert", FX / "chexpert" / "CheXpert-v1.0-small")
    df = src.frame
    # no official test labels: valid.csv is the test split and val is carved from train by patient
    assert len(df) == 10 and df.loc[9, "split"] == "test"
    assert set(df["split"][:9]) <= {"train", "val"}
    by_patient = df[:9].groupby("patient_id")["split"].nunique()
    assert (by_patient == 1).all()
    with_val = rows("chexpert", FX / "chexpert" / "CheXpert-v1.0-small", val_fraction=0.5).frame
    assert (with_val["split"][:9] == "val").any() and (with_val["split"][:9] == "train").any()
    assert df.loc[0, "image_path"] == "train/patient00001/study1/view1_frontal.jpg"
    assert df.loc[0, "study_id"] == df.loc[1, "study_id"] == "patient00001/study1"
    assert list(df["view"][:3]) == ["AP", "LAT", "PA"]
    assert states(src, 2) == {"cardiomegaly": "uncertain", "edema": "present", "pleural_effusion": "absent"}
    assert df.loc[5, "reason"] == "unknown_label" and "Edema='2.0'" in df.loc[5, "detail"]
    assert (df.loc[9, "source_file"], df.loc[9, "row"]) == ("valid.csv", 1)


def test_mimic_layout_reports_and_table():
    src = rows("mimic", FX / "mimic")
    df = src.frame
    assert src.labels is None and len(df) == 11
    assert df.loc[0, "image_path"] == "files/p10/p10000001/s50000001/d1a.jpg"
    assert list(df["view"][:2]) == ["PA", "LAT"]
    assert "heart is mildly enlarged" in df.loc[0, "report"]
    issues = dict(zip(df["study_id"], df["report_issue"]))
    assert issues["50000005"] == "not_utf8" and issues["50000006"] == "missing_report"
    assert set(df.loc[df["study_id"] == "50000007", "split"]) == {"val"}  # validate -> val
    assert df.loc[9, "reason"] == "unknown_split"
    tab = rows("mimic", FX / "mimic", labels="table")
    assert states(tab, 0) == {"cardiomegaly": "present", "pleural_effusion": "present", "pneumothorax": "absent"}
    reasons = dict(zip(tab.frame["image_id"], tab.frame["reason"]))
    assert reasons["d5a"] == "missing_labels" and reasons["d6a"] == "unknown_label"
    assert reasons["d7a"] == reasons["d7b"] == "conflicting_labels"


def test_nih_layout_and_mapping():
    src = rows("nih", FX / "nih")
    df = src.frame
    assert df.loc[0, "image_path"] == "images_001/images/00000001_000.png"
    assert states(src, 1)["pleural_effusion"] == "present"  # Effusion -> pleural_effusion
    assert states(src, 2)["no_finding"] == "present" and states(src, 2)["cardiomegaly"] == "absent"
    # fields NIH does not label are null; mapped fields not listed are absent
    assert "lung_lesion" not in states(src, 3) and states(src, 3)["edema"] == "absent"
    assert df.loc[2, "split"] == "test"
    assert list(df["reason"][4:8]) == ["unknown_label", "unknown_label", "unknown_split", None]


def test_nih_val_split_by_patient_seeded(tmp_path):
    root = tmp_path / "nih"
    shutil.copytree(FX / "nih", root)
    names = [f"{p:08d}_{k:03d}.png" for p in range(1, 201) for k in range(2)]
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
             "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"]
    lines += [f"{n},No Finding,0,{int(n[:8])},50,M,PA,8,8,0.1,0.1" for n in names]
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(names[:360]) + "\n")
    (root / "test_list.txt").write_text("\n".join(names[360:]) + "\n")
    a, b = rows("nih", root, seed=3).frame, rows("nih", root, seed=3).frame
    assert list(a["split"]) == list(b["split"])
    assert list(rows("nih", root, seed=4).frame["split"]) != list(a["split"])
    per_patient = a.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert a.loc[a["split"] == "val", "patient_id"].nunique() == 18  # 10% of 180 train_val patients
    assert (a["split"][360:] == "test").all()


def test_openi_r2gen_and_xml():
    r2 = rows("openi", FX / "openi" / "r2gen").frame
    assert list(r2["image_path"][:2]) == ["images/CXR1_1_IM-0001/0.png", "images/CXR1_1_IM-0001/1.png"]
    assert list(r2["split"]) == ["train", "train", "train", "val", "test"] and list(r2["row"]) == [1, 1, 2, 3, 4]
    xml = rows("openi", FX / "openi" / "ecgen").frame
    assert list(xml["image_path"][:2]) == ["NLMCXR_png/CXR1_1_IM-0001-3001.png", "NLMCXR_png/CXR1_1_IM-0001-4001.png"]
    assert xml.loc[0, "report"].startswith("FINDINGS: The cardiac silhouette is enlarged.")
    assert "IMPRESSION: Cardiomegaly." in xml.loc[0, "report"]
    assert xml.loc[3, "reason"] == "missing_image" and xml.loc[3, "source_file"] == "ecgen-radiology/3.xml"


def test_missing_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.csv"):
        rows("chexpert", tmp_path)
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-metadata.csv"):
        rows("mimic", tmp_path)
    with pytest.raises(FileNotFoundError, match="annotation.json"):
        rows("openi", tmp_path)


@pytest.mark.realdata
def test_nih_real_label_table(shared_data, tmp_path):
    """The real Data_Entry_2017_v2020.csv.gz: every row parses; counts match the NIH paper's label counts."""
    (tmp_path / "Data_Entry_2017_v2020.csv.gz").symlink_to(shared_data / "nih_cxr14_labels/Data_Entry_2017_v2020.csv.gz")
    import pandas as pd
    names = pd.read_csv(tmp_path / "Data_Entry_2017_v2020.csv.gz", usecols=["Image Index"])["Image Index"]
    (tmp_path / "test_list.txt").write_text("\n".join(names[:20000]) + "\n")
    (tmp_path / "train_val_list.txt").write_text("\n".join(names[20000:]) + "\n")
    src = rows("nih", tmp_path)
    assert len(src.frame) == 112120 and src.frame["reason"].isna().all()
    col = FIELDS.index
    present, absent = State.PRESENT.code, State.ABSENT.code
    assert int((src.labels[:, col("no_finding")] == present).sum()) == 60361
    assert int((src.labels[:, col("pleural_effusion")] == present).sum()) == 13317
    assert (src.labels[:, col("lung_lesion")] == NULL_CODE).all()
    assert np.isin(src.labels[:, col("edema")], (present, absent)).all()


def test_mimic_ids_that_would_escape_the_root_are_rejected_not_read(tmp_path):
    import shutil

    root = tmp_path / "mimic"
    shutil.copytree(FX / "mimic", root)
    (tmp_path / "secret.txt").write_text("FINDINGS: outside the dataset root")
    meta = root / "mimic-cxr-2.0.0-metadata.csv"
    lines = meta.read_text().splitlines()
    first = lines[1].split(",")
    first[2] = "../../../../secret"  # study_id column crafted to point outside the root
    meta.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    df = rows("mimic", root).frame
    assert lines[0].split(",")[2] == "study_id"
    row = df.loc[0]
    assert row["reason"] == "missing_id" and "digits" in row["detail"]
    assert row["report"] is None
