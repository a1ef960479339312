"""UMS models: validators, target text, JSON Schema freshness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from vivid_med import ums
from vivid_med.fields import DISPLAY_NAMES, FIELDS, PRETRAIN_FIELDS

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema" / "ums.schema.json"
TABLE = ums.provenance("label_table", label_file="train.csv")


def test_every_field_present_and_flags_derived():
    rec = ums.cxr_record({"cardiomegaly": "present", "edema": "uncertain"}, "PA", TABLE)
    doc = json.loads(rec.model_dump_json())
    assert list(doc["findings"]) == list(FIELDS)
    assert doc["findings"]["edema"] == {"state": "uncertain", "answerable": True, "uncertain": True, "evidence": None}
    assert doc["findings"]["fracture"] == {"state": None, "answerable": False, "uncertain": False, "evidence": None}
    assert ums.UMSRecord.model_validate_json(rec.model_dump_json()) == rec


@pytest.mark.parametrize("finding", [
    {"state": None, "answerable": True, "uncertain": False, "evidence": None},
    {"state": "present", "answerable": False, "uncertain": False, "evidence": None},
    {"state": "absent", "answerable": True, "uncertain": True, "evidence": None},
    {"state": "maybe", "answerable": True, "uncertain": False, "evidence": None},
    {"state": "present", "answerable": True, "uncertain": False},  # key missing
])
def test_inconsistent_finding_rejected(finding):
    doc = json.loads(ums.cxr_record({}, None, TABLE).model_dump_json())
    doc["findings"]["edema"] = finding
    with pytest.raises(ValidationError):
        ums.UMSRecord.model_validate_json(json.dumps(doc))


def test_missing_field_key_and_extra_keys_rejected():
    doc = json.loads(ums.cxr_record({}, None, TABLE).model_dump_json())
    del doc["findings"]["fracture"]
    with pytest.raises(ValidationError):
        ums.UMSRecord.model_validate(doc)
    doc = json.loads(ums.cxr_record({}, None, TABLE).model_dump_json())
    doc["patient_name"] = "x"
    with pytest.raises(ValidationError):
        ums.UMSRecord.model_validate(doc)


def test_provenance_and_evidence_rules():
    report = "FINDINGS: Mild cardiomegaly."
    ev = ums.Evidence(sentence="Mild cardiomegaly.", sentence_index=0, sentence_start=10, sentence_end=28,
                      start=15, end=27)
    rule = ums.provenance("rule_extractor", extractor_version="rules-1")
    rec = ums.cxr_record({"cardiomegaly": "present"}, None, rule, {"cardiomegaly": ev})
    rec.check_evidence(report)
    with pytest.raises(ValueError, match="does not occur"):
        rec.check_evidence("something else entirely, longer than the span")
    with pytest.raises(ValidationError, match="need evidence"):
        ums.cxr_record({"cardiomegaly": "present"}, None, rule)
    with pytest.raises(ValidationError, match="no text evidence"):
        ums.cxr_record({"cardiomegaly": "present"}, None, TABLE, {"cardiomegaly": ev})
    with pytest.raises(ValidationError, match="extractor_version"):
        ums.provenance("rule_extractor")
    with pytest.raises(ValidationError, match="not inside its sentence"):
        ums.Evidence(sentence="Mild", sentence_index=0, sentence_start=10, sentence_end=14, start=12, end=20)


def test_target_text_stable_display_names_explicit_nulls():
    a = ums.cxr_record({"cardiomegaly": "present", "no_finding": "absent"}, "AP", TABLE)
    b = ums.cxr_record({"cardiomegaly": "present", "no_finding": "present"},
                       "AP", ums.provenance("label_table", label_file="valid.csv"))
    text = ums.target_text(a)
    doc = json.loads(text)
    assert list(doc) == ["modality", "findings", "study_view"]
    assert list(doc["findings"]) == [DISPLAY_NAMES[f] for f in PRETRAIN_FIELDS]
    assert doc["findings"]["Cardiomegaly"] == {"state": "present"} and doc["findings"]["Edema"] == {"state": None}
    assert text == json.dumps(doc, separators=(",", ":"))  # compact
    # no_finding and provenance are not in the pretraining target: same findings -> same text and hash
    assert ums.target_text(a) == ums.target_text(b)
    assert ums.target_hash(ums.target_text(a)) == ums.target_hash(ums.target_text(b))
    assert ums.target_text(a, ("no_finding",)) != ums.target_text(b, ("no_finding",))
    with pytest.raises(ValueError, match="unknown"):
        ums.target_text(a, ("organ",))


def test_ct_record():
    prov = ums.provenance("label_table", label_file="LIDC XML")
    rec = ums.ct_record(prov, nodule_malignancy="malignant")
    assert json.loads(ums.target_text(rec, ("nodule_malignancy",))) == {
        "modality": "CT", "findings": {"Nodule Malignancy": {"state": "malignant"}}, "study_view": None}
    organ = ums.ct_record(prov, organ="kidney-left", anatomy="abdomen")
    assert ums.UMSRecord.model_validate_json(organ.model_dump_json()).ct_findings.organ == "kidney-left"
    with pytest.raises(ValidationError):
        ums.ct_record(prov, nodule_malignancy="probably")
    with pytest.raises(ValidationError):
        ums.UMSRecord(schema_version=ums.SCHEMA_VERSION, modality="CT", anatomy="chest", study_view="PA",
                      findings=None, ct_findings=rec.ct_findings, provenance=prov)


def test_schema_version_checked():
    doc = json.loads(ums.cxr_record({}, None, TABLE).model_dump_json())
    doc["schema_version"] = "0.9"
    with pytest.raises(ValidationError):
        ums.UMSRecord.model_validate(doc)


def test_exported_json_schema_is_current():
    assert SCHEMA_FILE.is_file(), "run `vivid-med schema`"
    assert SCHEMA_FILE.read_text() == ums.json_schema(), "schema/ums.schema.json is stale: run `vivid-med schema`"
