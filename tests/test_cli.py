"""`vivid-med structure` on CSV / JSONL / Parquet with every kind of bad row; `vivid-med schema --check`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vivid_med.cli import main
from vivid_med.fields import FIELDS
from vivid_med.ums import UMSRecord


GOOD = "FINDINGS: Mild cardiomegaly. No pleural effusion.\n\nIMPRESSION: Possible right basilar pneumonia."


def check_output(out, capsys, n_ok, bad: dict[int, str]):
    printed = capsys.readouterr().out
    got = pd.read_parquet(out)
    rej = pd.read_parquet(out.with_name(out.name.replace(".parquet", ".rejects.parquet")))
    assert list(got.columns) == ["study_id", *FIELDS, "ums_json"]
    assert len(got) == n_ok and dict(zip(rej["row"], rej["reason"])) == bad
    assert f"{n_ok + len(bad)} rows = {n_ok} accepted + {len(bad)} rejected" in printed
    return got


def test_structure_csv_every_bad_row(tmp_path, capsys):
    path = tmp_path / "reports.csv"
    rows = [b"rid,text", b'a1,"' + GOOD.encode() + b'"', b"a2,", b'a3,"   \n  "', b'a4,"FINDINGS:\n\nIMPRESSION:"',
            b'a5,"No effusion \xff\xfe here."', b'a1,"' + GOOD.encode() + b'"', b",No pneumothorax.",
            b"a6,No pneumothorax."]
    path.write_bytes(b"\n".join(rows) + b"\n")
    out = tmp_path / "out.parquet"
    assert main(["structure", str(path), "--id-column", "rid", "--text-column", "text", "--out", str(out)]) == 0
    got = check_output(out, capsys, 2, {2: "empty_report", 3: "empty_report", 4: "no_usable_section", 5: "not_utf8",
                                        6: "duplicate_id", 7: "missing_id"})
    assert list(got["study_id"]) == ["a1", "a6"]
    assert got.loc[0, "cardiomegaly"] == "present" and got.loc[0, "pleural_effusion"] == "absent"
    assert got.loc[0, "pneumonia"] == "uncertain" and pd.isna(got.loc[0, "fracture"])
    assert got.loc[1, "pneumothorax"] == "absent"
    UMSRecord.model_validate_json(got.loc[0, "ums_json"]).check_evidence(GOOD)


def test_structure_jsonl_and_parquet(tmp_path, capsys):
    jl = tmp_path / "r.jsonl"
    jl.write_bytes(b"\n".join([json.dumps({"id": 7, "report": GOOD}).encode(), b"{not json",
                               b'{"id": 8, "report": "Heart size normal. \xff"}',
                               json.dumps({"id": 9, "report": None}).encode()]) + b"\n")
    out = tmp_path / "j.parquet"
    main(["structure", str(jl), "--id-column", "id", "--text-column", "report", "--out", str(out)])
    got = check_output(out, capsys, 1, {2: "unreadable_row", 3: "not_utf8", 4: "empty_report"})
    assert list(got["study_id"]) == ["7"]
    pq_in = tmp_path / "r.parquet"
    pd.DataFrame({"sid": ["x", "y"], "t": [GOOD, "  "]}).to_parquet(pq_in)
    out = tmp_path / "p.parquet"
    main(["structure", str(pq_in), "--id-column", "sid", "--text-column", "t", "--out", str(out)])
    check_output(out, capsys, 1, {2: "empty_report"})


def test_structure_names_missing_columns(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("id,body\n1,Normal heart.\n")
    assert main(["structure", str(path), "--id-column", "id", "--text-column", "text",
                 "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert "r.csv: no column(s) ['text']; the header (line 1) has ['id', 'body']" in err and "Normal" not in err
    assert not (tmp_path / "o.parquet").exists()


def test_schema_command_detects_stale(tmp_path, capsys):
    path = tmp_path / "ums.schema.json"
    assert main(["schema", "--out", str(path)]) == 0
    assert main(["schema", "--out", str(path), "--check"]) == 0
    path.write_text(path.read_text().replace('"present"', '"positive"'))
    assert main(["schema", "--out", str(path), "--check"]) == 1
    assert "stale" in capsys.readouterr().err


@pytest.mark.realdata
def test_structure_real_iu_reports(shared_data, tmp_path, capsys):
    """2,069 real IU X-ray reports: all accounted for, evidence spans verified, most fields null."""
    src = shared_data / "iu_xray_reports_dev" / "reports.csv"
    out = tmp_path / "iu.parquet"
    main(["structure", str(src), "--id-column", "study_id", "--text-column", "report", "--out", str(out)])
    got = pd.read_parquet(out)
    rej = pd.read_parquet(tmp_path / "iu.rejects.parquet")
    assert len(got) + len(rej) == 2069
    assert len(got) > 2000
    reports = dict(zip(*pd.read_csv(src)[["study_id", "report"]].T.values))
    for sid, doc in zip(got["study_id"][:300], got["ums_json"][:300]):
        UMSRecord.model_validate_json(doc).check_evidence(reports[sid])
    assert got["pleural_effusion"].value_counts()["absent"] > 1000  # "no pleural effusion" is ubiquitous
