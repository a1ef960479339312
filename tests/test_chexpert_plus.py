"""CheXpert Plus (kind ``chexpert_plus``) on a fixture in the release's layout: records from the reports and from
the CheXbert label files, every bad row a reject with its row number, counts that add up."""

from __future__ import annotations

from pathlib import Path

import pytest

from vivid_med import ums
from vivid_med.params import ParamsError
from vivid_med.records import build_records
from vivid_med.sources import open_dataset, parse_dataset

ROOT = Path(__file__).parent / "fixtures" / "chexpert_plus"


def records(**options):
    spec = {"kind": "chexpert_plus", "root": str(ROOT), **options}
    opts = parse_dataset(spec, "records", "records.sources.cxp")
    src = open_dataset(opts).records()
    rec, rej = build_records(src, "cxp", opts.labels, check_images=opts.check_images)
    assert len(rec) + len(rej) == len(src.frame) == 8  # accepted + rejected = input
    return src, rec, rej


def reasons(rejects):
    assert set(rejects["source_file"]) <= {"df_chexpert_plus_240401.csv"}
    return dict(zip(rejects["row"], rejects["reason"]))


def test_rows_ids_views_and_splits():
    src, _, _ = records()
    df = src.frame
    assert df.loc[0, "image_path"] == "PNG/train/patient00001/study1/view1_frontal.png"
    assert df.loc[0, "image_id"] == "train/patient00001/study1/view1_frontal"  # the chexpert kind's image ids
    assert (df.loc[0, "patient_id"], df.loc[0, "study_id"]) == ("patient00001", "patient00001/study1")
    assert list(df["view"][:3]) == ["AP", "LAT", "PA"]
    assert df.loc[0, "report"].startswith("FINDINGS: The heart is mildly enlarged.")
    assert "\n\nIMPRESSION: 1. Mild cardiomegaly." in df.loc[0, "report"]
    assert df.loc[5, "split"] == "test" and df.loc[4, "split"] is None  # valid -> test; 'training' unknown
    assert set(df.loc[df["split"].notna(), "split"]) == {"train", "test"}  # val_fraction 0.05 of 6 patients: none
    carved = records(val_fraction=0.5)[0].frame
    assert set(carved["split"].dropna()) == {"train", "val", "test"}
    assert (carved.dropna(subset=["split"]).groupby("patient_id")["split"].nunique() == 1).all()


def test_records_from_reports():
    _, rec, rej = records()
    assert reasons(rej) == {4: "no_usable_section", 5: "unknown_split", 7: "missing_image"}
    assert list(rec["image_id"].str.split("/").str[1]) == ["patient00001", "patient00001", "patient00002",
                                                             "patient64541", "patient00006"]
    first = rec.iloc[0]
    assert (first["cardiomegaly"], first["pleural_effusion"], first["pneumothorax"]) == ("present", "present", "absent")
    assert rec.iloc[4]["edema"] == "present" and rec.iloc[3]["split"] == "test"
    r = ums.UMSRecord.model_validate_json(first["ums_json"])
    assert r.provenance.source == "rule_extractor"
    r.check_evidence(first["report"])


def test_records_from_chexbert_labels():
    _, rec, rej = records(labels="table")
    assert reasons(rej) == {3: "unknown_label", 5: "unknown_split", 7: "missing_image", 8: "missing_labels"}
    assert "impression_fixed.json: Edema='2.0'" in rej.loc[rej["row"] == 3, "detail"].item()
    assert list(rec["no_finding"].fillna("-")) == ["-", "-", "present", "-"]
    assert list(rec["cardiomegaly"][:2]) == ["present", "present"] and rec.iloc[3]["support_devices"] == "present"
    r = ums.UMSRecord.model_validate_json(rec.iloc[0]["ums_json"])
    assert (r.provenance.source, r.provenance.label_file) == ("label_table", "chexbert_labels/impression_fixed.json")
    assert rec["report"].notna().all()  # the report text travels with table records too
    _, rec, rej = records(labels="table", label_section="report")
    assert reasons(rej) == {5: "unknown_split", 7: "missing_image"} and len(rec) == 6
    assert rec.iloc[0]["pneumothorax"] == "absent"


def test_check_images_off_and_jpeg_images():
    _, rec, rej = records(check_images=False)
    assert reasons(rej) == {4: "no_usable_section", 5: "unknown_split"}
    src, _, _ = records(image_dir="", image_suffix=".jpg", check_images=False)
    assert src.frame.loc[0, "image_path"] == "train/patient00001/study1/view1_frontal.jpg"


@pytest.mark.parametrize("option, value, allowed", [
    ("labels", "chexbert", "'reports' or 'table'"),
    ("label_section", "history", "'impression', 'findings' or 'report'"),
    ("image_suffix", ".tif", "'.png' or '.jpg'"),
])
def test_bad_option_names_the_key_and_the_choices(option, value, allowed):
    with pytest.raises(ParamsError, match=rf"records.sources.cxp.{option}: Input should be {allowed}"):
        records(**{option: value})


def test_missing_table_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="df_chexpert_plus_240401.csv"):
        open_dataset(parse_dataset({"kind": "chexpert_plus", "root": str(tmp_path)}, "records", "x")).records()
