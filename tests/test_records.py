"""Records builder: every kind of bad input becomes a reject, the fast label-table path equals per-row
Pydantic, tables round-trip with their schema, and the stage runs end to end on fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vivid_med import ums
from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
from vivid_med.params import ParamsError
from vivid_med.records import RecordsParams, build_records, table_records
from vivid_med.records import run as run_records
from vivid_med.sources import DATASETS, open_dataset, parse_dataset
from vivid_med.states import STATE_OF_CODE
from vivid_med.tables import (RECORDS_SCHEMA, read_records, read_rejects, table_metadata, write_records,
                              write_rejects)

FX = Path(__file__).parent / "fixtures"


def run(kind, root, labels=None):
    spec = {"kind": kind, "root": str(root), **({"labels": labels} if labels else {})}
    options = parse_dataset(spec, "records", f"records.sources.fx_{kind}")
    return build_records(open_dataset(options).records(), f"fx_{kind}", options.labels)


def reasons(rejects):
    return dict(zip(rejects["row"], rejects["reason"]))


def test_chexpert_table_route_every_bad_row():
    rec, rej = run("chexpert", FX / "chexpert" / "CheXpert-v1.0-small")
    assert len(rec) + len(rej) == 10
    assert reasons(rej[rej["source_file"] == "train.csv"]) == {
        4: "conflicting_labels", 5: "conflicting_labels", 6: "unknown_label", 7: "duplicate_image",
        8: "missing_image", 9: "path_outside_root"}
    assert list(rec["image_id"]) == ["train/patient00001/study1/view1_frontal", "train/patient00001/study1/view2_lateral",
                                     "train/patient00002/study1/view1_frontal", "valid/patient64541/study1/view1_frontal"]
    # two images of one study are not duplicates: both kept, same states, own views
    assert list(rec["view"][:2]) == ["AP", "LAT"] and rec.loc[0, "no_finding"] == rec.loc[1, "no_finding"] == "present"
    r = ums.UMSRecord.model_validate_json(rec.loc[2, "ums_json"])
    assert r.findings.cardiomegaly.state == "uncertain" and r.provenance.label_file == "train.csv"
    assert rec.loc[2, "target_hash"] == ums.target_hash(ums.target_text(r, PRETRAIN_FIELDS))
    assert rec["report"].isna().all()


def test_mimic_report_route_every_bad_report():
    rec, rej = run("mimic", FX / "mimic", "reports")
    assert list(rec["image_id"]) == ["d1a", "d1b", "d7a"]
    assert reasons(rej) == {3: "empty_report", 4: "empty_report", 5: "no_usable_section", 6: "not_utf8",
                            7: "missing_report", 9: "missing_image", 10: "unknown_split", 11: "duplicate_image"}
    assert rec.loc[0, "cardiomegaly"] == "present" and rec.loc[0, "pneumothorax"] == "absent"
    r = ums.UMSRecord.model_validate_json(rec.loc[0, "ums_json"])
    assert r.provenance.source == "rule_extractor" and r.provenance.extractor_version
    ev = r.findings.pleural_effusion.evidence
    assert "effusion" in rec.loc[0, "report"][ev.start:ev.end].lower()
    r.check_evidence(rec.loc[0, "report"])
    assert rec.loc[2, "split"] == "val" and rec.loc[2, "support_devices"] == "present"


def test_mimic_table_route():
    rec, rej = run("mimic", FX / "mimic", "table")
    assert list(rec["study_id"]) == ["50000001", "50000001", "50000002", "50000003", "50000004"]
    assert reasons(rej) == {6: "missing_labels", 7: "unknown_label", 8: "conflicting_labels",
                            9: "conflicting_labels", 10: "unknown_split", 11: "duplicate_image"}
    assert rec.loc[3, "edema"] == "uncertain" and rec.loc[3, "report"] is not None


def test_nih_and_openi():
    rec, rej = run("nih", FX / "nih")
    assert len(rec) == 4 and reasons(rej) == {5: "unknown_label", 6: "unknown_label", 7: "unknown_split",
                                               8: "missing_image", 9: "duplicate_image"}
    assert set(rec["split"]) == {"train", "test"}
    rec, rej = run("openi", FX / "openi" / "r2gen")
    assert len(rec) == 2 and list(rej["reason"]) == ["empty_report", "empty_report", "missing_image"]
    rec, rej = run("openi", FX / "openi" / "ecgen")
    assert len(rec) == 2 and list(rej["reason"]) == ["no_usable_section", "missing_image"]
    assert rec.loc[0, "cardiomegaly"] == "present"


def test_path_escape_via_symlink(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    shutil.copytree(FX / "chexpert" / "CheXpert-v1.0-small", root)
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"x")
    target = root / "train/patient00002/study1/view1_frontal.jpg"
    target.unlink()
    target.symlink_to(outside)
    moved = tmp_path / "patient00001"
    shutil.move(root / "train/patient00001", moved)
    (root / "train/patient00001").symlink_to(moved, target_is_directory=True)
    rec, rej = run("chexpert", root)
    got = reasons(rej[rej["source_file"] == "train.csv"])
    assert got[1] == got[2] == got[3] == "path_outside_root"
    assert len(rec) == 1  # only the valid.csv image is left


def test_fast_path_equals_per_row_pydantic():
    rng = np.random.default_rng(0)
    n = 300
    codes = rng.integers(0, 4, size=(n, len(FIELDS)), dtype=np.int8)
    codes[::3] = codes[0]  # repeated combinations
    views = [("PA", "AP", "LAT", None)[k] for k in rng.integers(0, 4, n)]
    files = [("train.csv", "valid.csv")[k] for k in rng.integers(0, 2, n)]
    got_json, got_hash = table_records(codes, pd.Series(views, dtype=object), pd.Series(files), PRETRAIN_FIELDS)
    for i in range(n):
        rec = ums.cxr_record({f: STATE_OF_CODE[c] for f, c in zip(FIELDS, codes[i])}, views[i],
                             ums.provenance("label_table", label_file=files[i]))
        assert got_json[i] == rec.model_dump_json()
        assert got_hash[i] == ums.target_hash(ums.target_text(rec, PRETRAIN_FIELDS))


def test_tables_roundtrip_with_schema_version(tmp_path):
    rec, rej = run("nih", FX / "nih")
    write_records(rec, tmp_path / "r.parquet", PRETRAIN_FIELDS)
    write_rejects(rej, tmp_path / "r.rejects.parquet")
    assert pq.read_schema(tmp_path / "r.parquet").remove_metadata() == RECORDS_SCHEMA.remove_metadata()
    meta = table_metadata(tmp_path / "r.parquet")
    assert meta == {"schema_version": ums.SCHEMA_VERSION, "target_fields": list(PRETRAIN_FIELDS)}
    back = read_records(tmp_path / "r.parquet")
    assert list(back["cardiomegaly"]) == list(rec["cardiomegaly"])
    assert list(read_rejects(tmp_path / "r.rejects.parquet")["reason"]) == list(rej["reason"])
    bad = rej.copy()
    bad.loc[0, "reason"] = "because"
    with pytest.raises(ValueError, match="unknown reason"):
        write_rejects(bad, tmp_path / "x.parquet")
    table = pq.read_table(tmp_path / "r.parquet")
    pq.write_table(table.replace_schema_metadata({b"vivid_med.schema_version": b"0.1"}), tmp_path / "old.parquet")
    with pytest.raises(ValueError, match="0.1"):
        read_records(tmp_path / "old.parquet")


def test_labels_route_checked():
    with pytest.raises(ParamsError, match=r"records.sources.fx_openi.labels: Input should be 'reports'"):
        run("openi", FX / "openi" / "r2gen", "table")
    with pytest.raises(ParamsError, match=r"records.sources.fx_padchest.kind: unknown dataset kind.*'chexpert'"):
        run("padchest", FX)
    src = DATASETS["openi"].at(FX / "openi" / "r2gen").records()
    with pytest.raises(ValueError, match="no label table"):  # the library refuses a table route without one
        build_records(src, "fx", "table")


def test_stage_on_fixtures(tmp_path, monkeypatch, capsys):
    from stages.records import main

    (tmp_path / "params.yaml").write_text(
        "fields: [cardiomegaly, edema, pleural_effusion]\nrecords:\n  llm_extractor: null\n  report_text: keep\n  sources:\n"
        f"    fx_mimic: {{kind: mimic, root: {FX / 'mimic'}, labels: reports}}\n"
        f"    fx_nih: {{kind: nih, root: {FX / 'nih'}, seed: 1}}\n")
    monkeypatch.chdir(tmp_path)
    main([])
    assert "fx_mimic: 11 input = 3 accepted + 8 rejected" in capsys.readouterr().out
    info = json.loads((tmp_path / "data/records/fx_nih.json").read_text())
    assert info["root"] == str(FX / "nih") and info["accepted"] == 4 and info["rejected"] == 5
    metrics = json.loads((tmp_path / "metrics/records.json").read_text())
    assert metrics["fx_mimic"]["rejects_by_reason"]["empty_report"] == 2
    assert table_metadata(tmp_path / "data/records/fx_mimic.parquet")["target_fields"] == [
        "cardiomegaly", "edema", "pleural_effusion"]
    first = (tmp_path / "data/records/fx_mimic.parquet").read_bytes()
    main([])
    assert (tmp_path / "data/records/fx_mimic.parquet").read_bytes() == first  # same params -> same bytes


@pytest.mark.slow
def test_llm_route_keeps_rule_result_and_says_why():
    """A real (tiny, random) causal LM proposes garbage: rule states stand, the reason is in provenance."""
    from test_extract import _tiny_llama

    from vivid_med.extract.llm import LLMProposer
    from vivid_med.reports import TextExtractor

    model, tok = _tiny_llama()
    extractor = TextExtractor(LLMProposer(model, tok, max_new_tokens=8), "tiny", llm_max_reports=1)
    src = DATASETS["mimic"].at(FX / "mimic", labels="reports").records()
    rec, rej = build_records(src, "fx", "reports", extractor=extractor)
    plain, _ = build_records(src, "fx", "reports")
    assert list(rec["cardiomegaly"]) == list(plain["cardiomegaly"]) and extractor.llm_used == 1
    notes = [ums.UMSRecord.model_validate_json(j).provenance.note for j in rec["ums_json"]]
    assert notes[0] == "rule result stands: invalid JSON" and notes[-1] is None


def test_llm_provenance_names_adopted_fields():
    from vivid_med.extract import extract_report
    from vivid_med.extract.llm import merge, parse_proposal
    from vivid_med.reports import llm_provenance

    text = "Mild cardiomegaly. No large effusion. Possible small effusion."
    prop, _ = parse_proposal('{"Pleural Effusion": {"state": "absent", "evidence": "No large effusion"}}')
    prov = llm_provenance(merge(text, extract_report(text), prop), "v+llm:x")
    assert (prov.source, prov.extractor_version, prov.note) == ("llm_extractor", "v+llm:x", "llm fields: pleural_effusion")


def test_stage_refuses_bad_params_before_reading(tmp_path, monkeypatch):
    """A wrong option stops the stage naming the key and the allowed values; nothing is written."""
    from stages.records import main

    (tmp_path / "params.yaml").write_text(
        "fields: [cardiomegaly]\nrecords:\n  llm_extractor: null\n  report_text: keep\n  sources:\n"
        f"    fx_nih: {{kind: nih, root: {FX / 'nih'}}}\n"
        f"    fx_mimic: {{kind: mimic, root: {FX / 'mimic'}, labels: text}}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=r"records.sources.fx_mimic.labels: Input should be 'reports' or 'table'"):
        main([])
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_run_is_a_library_call(tmp_path):
    params = RecordsParams.model_validate({"llm_extractor": None, "report_text": "keep", "sources": {
        "fx_nih": {"kind": "nih", "root": str(FX / "nih")}}})
    metrics = run_records(params, ["cardiomegaly"], tmp_path)
    assert metrics["fx_nih"]["accepted"] == 4 and (tmp_path / "fx_nih.parquet").is_file()
    info = json.loads((tmp_path / "fx_nih.json").read_text())
    assert (info["kind"], info["labels"], info["target_fields"], info["synthetic"]) == ("nih", "table",
                                                                                        ["cardiomegaly"], False)


@pytest.mark.parametrize("root, out", [("out", "out"), ("out/nih", "out"), (".", "out")])
def test_run_refuses_an_output_folder_overlapping_a_root(tmp_path, root, out):
    """data/records is replaced as a whole, so it must neither hold nor sit inside a dataset root."""
    shutil.copytree(FX / "nih", tmp_path / root, dirs_exist_ok=True)
    before = sorted(tmp_path.rglob("*"))
    params = RecordsParams.model_validate({"llm_extractor": None, "report_text": "keep", "sources": {
        "fx_nih": {"kind": "nih", "root": str(tmp_path / root)}}})
    with pytest.raises(ValueError, match=r"records.sources.fx_nih: root .* overlap"):
        run_records(params, ["cardiomegaly"], tmp_path / out)
    assert sorted(tmp_path.rglob("*")) == before


def test_records_without_report_text_keep_states_targets_and_offsets(tmp_path):
    """``report_text: drop``: no report text anywhere in the records (report null, evidence sentences null), the
    same states, targets and evidence offsets as with the text kept."""
    from vivid_med.records import RecordsParams, run

    secret = "SENTINEL-REPORT-TEXT"
    root = tmp_path / "mimic"
    shutil.copytree(FX / "mimic", root)
    for report in root.rglob("s*.txt"):
        report.write_bytes(report.read_bytes() + f" {secret} is here.".encode())
    spec = {"kind": "mimic", "root": str(root), "labels": "reports"}
    frames = {}
    for mode in ("keep", "drop"):
        params = RecordsParams.model_validate({"sources": {"m": spec}, "llm_extractor": None, "report_text": mode})
        run(params, PRETRAIN_FIELDS, tmp_path / mode)
        frames[mode] = read_records(tmp_path / mode / "m.parquet")
        found = secret.encode() in (tmp_path / mode / "m.parquet").read_bytes()
        assert found is (mode == "keep")
    keep, drop = frames["keep"], frames["drop"]
    assert drop["report"].isna().all() and keep["report"].notna().any()
    assert (keep[list(FIELDS)].fillna("-") == drop[list(FIELDS)].fillna("-")).all().all()
    assert keep["target_hash"].tolist() == drop["target_hash"].tolist()
    for a, b in zip(keep["ums_json"], drop["ums_json"]):
        ra, rb = ums.UMSRecord.model_validate_json(a), ums.UMSRecord.model_validate_json(b)
        for f in FIELDS:
            ea, eb = getattr(ra.findings, f).evidence, getattr(rb.findings, f).evidence
            assert (ea is None) == (eb is None)
            if ea is not None:
                assert eb.sentence is None and (ea.start, ea.end, ea.sentence_start) == (eb.start, eb.end, eb.sentence_start)
