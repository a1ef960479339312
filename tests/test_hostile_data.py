"""Hostile input and interruptions (issue #11), data side: `vivid-med structure` and the label tables of every
record-source kind on malformed files, symlinks, directories, encodings and ids; the records stage and the CLI
killed with SIGKILL at named failpoints (``tests/faults.py``).

Every case ends in ``assert_sound``: accepted + rejected = the input rows of every file (each reject a distinct
row of its file), a sentinel written outside every dataset root appears in no output, and where a run must fail
(or was killed) the previous outputs are byte-identical with nothing added.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from faults import killed, run, snapshot
from helpers import write_params

from vivid_med.cli import main
from vivid_med.fields import PRETRAIN_FIELDS
from vivid_med.records import RecordsParams, check_paths
from vivid_med.records import run as run_records
from vivid_med.sources import DATASETS
from vivid_med.sources.tablefile import InputFileError
from vivid_med.tables import counts_line

FX = Path(__file__).parent / "fixtures"
SENTINEL = "SENTINEL-outside-the-root"


def _text_of(path: Path) -> str:
    try:
        table = pq.read_table(path)
        return json.dumps(table.to_pylist(), default=str) + str(table.schema.metadata)
    except Exception:  # not Parquet: the raw bytes
        return path.read_bytes().decode("utf-8", errors="replace")


def relative_snapshot(root: Path) -> dict[str, str]:
    """``faults.snapshot`` of ``root`` with paths relative to it (comparable across copies of a project)."""
    return {os.path.relpath(p, root): h for p, h in snapshot(root).items()} if root.exists() else {}


def assert_sound(out: Path, rows: dict[str, int] | None = None, before: dict[str, str] | None = None,
                 killed_before: bool = False) -> None:
    """The rule of every case. ``rows`` (input rows per file name, for a run that succeeded): rows of the accepted
    tables (every ``*.parquet`` under ``out`` but rejects) + rejects = their sum, each reject a distinct row of its
    file. ``before`` (a ``relative_snapshot`` of ``out`` taken before a run that had to fail): nothing changed or
    was added. Always: the sentinel placed outside every root is in no file under ``out``, and no temporary file is
    there, except hidden ``*.tmp`` files a SIGKILLed run (``killed_before``) could not remove, never counted."""
    files = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    for p in files:
        assert SENTINEL not in _text_of(p), f"{p} holds text from outside a root"
    hidden = [p for p in files if p.name.startswith(".")]
    assert all(p.suffix == ".tmp" for p in hidden) if killed_before else not hidden, hidden
    if before is not None:
        assert relative_snapshot(out) == before
    if rows is not None:
        tables = [p for p in files if p.suffix == ".parquet" and p not in hidden]
        rejects = pd.concat([pd.read_parquet(p) for p in tables if p.name.endswith(".rejects.parquet")])
        accepted = sum(pq.read_metadata(p).num_rows for p in tables if not p.name.endswith(".rejects.parquet"))
        assert accepted + len(rejects) == sum(rows.values())
        assert not rejects.duplicated(["source_file", "row"]).any()
        assert all(1 <= r <= rows[f] for f, r in zip(rejects["source_file"], rejects["row"]))


# ---- vivid-med structure -------------------------------------------------------------------------------------

def structure(capsys, src: Path, out: Path, id_column: str = "id") -> tuple[int, str]:
    """Run ``vivid-med structure`` in-process; (exit code, stderr)."""
    rc = main(["structure", str(src), "--id-column", id_column, "--text-column", "text",
               "--out", str(out / "reports.parquet")])
    return rc, capsys.readouterr().err


def structured(out: Path) -> tuple[list[str], dict[int, str]]:
    rejects = pd.read_parquet(out / "reports.rejects.parquet")
    return list(pd.read_parquet(out / "reports.parquet")["study_id"]), dict(zip(rejects["row"], rejects["reason"]))


BLANKS = "id,text\nr1,No effusion.\n\nr2,\n   \nr3,Mild cardiomegaly.\n"
CSV_CASES = {  # name: (file bytes, file ending, accepted ids, rejects {row: reason}, input rows)
    "unquoted comma": (b"id,text\nr1,Heart normal, no effusion.\nr2,No pneumothorax.\nr3,Mild cardiomegaly.\n",
                       ".csv", ["r2", "r3"], {1: "ragged_row"}, 3),
    "ragged rows": (b"id,text\nr1\nr2,No effusion.\nr3,No edema.,x,y\n", ".csv", ["r2"],
                    {1: "ragged_row", 3: "ragged_row"}, 3),
    "blank lines": (BLANKS.encode(), ".csv", ["r1", "r3"], {2: "blank_line", 3: "empty_report", 4: "blank_line"}, 5),
    "utf-16-le bom": (codecs.BOM_UTF16_LE + BLANKS.encode("utf-16-le"), ".csv", ["r1", "r3"],
                      {2: "blank_line", 3: "empty_report", 4: "blank_line"}, 5),
    "utf-16-be bom": (codecs.BOM_UTF16_BE + BLANKS.encode("utf-16-be"), ".csv", ["r1", "r3"],
                      {2: "blank_line", 3: "empty_report", 4: "blank_line"}, 5),
    "utf-8 bom, crlf": (b"\xef\xbb\xbfid,text\r\nr1,No effusion.\r\n", ".csv", ["r1"], {}, 1),
    "multi-line report is one row": (b'id,text\nr1,"FINDINGS: No effusion.\n\nIMPRESSION: Normal."\nr2,\n', ".csv",
                                     ["r1"], {2: "empty_report"}, 2),
    "ids are text": (b"id,text\n0,No effusion.\nfalse,Mild cardiomegaly.\nnan,No edema.\n,No edema.\nNULL,No edema."
                     b"\n  ,No edema.\n", ".csv", ["0", "false"],
                     {3: "missing_id", 4: "missing_id", 5: "missing_id", 6: "missing_id"}, 6),
    "id not utf-8": (b"id,text\nr\xff1,No effusion.\nr2,Mild cardiomegaly.\n", ".csv", ["r2"], {1: "not_utf8"}, 2),
    "bad quoting": (b'id,text\nr1,"No effusion."x\nr2,No edema.\n', ".csv", ["r2"], {1: "unreadable_row"}, 2),
    "unclosed quote": (b'id,text\nr1,No edema.\nr2,"No effusion.\nr3,No edema.\n', ".csv", ["r1"],
                       {2: "unreadable_row"}, 2),
    "tsv": (b"id\ttext\nr1\tNo effusion, no edema.\nr2\tNo edema.\tx\n", ".tsv", ["r1"], {2: "ragged_row"}, 2),
    "gzip": (gzip.compress(BLANKS.encode()), ".csv.gz", ["r1", "r3"],
             {2: "blank_line", 3: "empty_report", 4: "blank_line"}, 5),
    "jsonl": (b'{"id": 0, "text": "No effusion."}\n{"id": false, "text": "Mild cardiomegaly."}\n'
              b'{"id": NaN, "text": "No edema."}\n{"id": null, "text": "No edema."}\n{broken\n\n[1, 2]\n'
              b'{"id": ["a"], "text": "No edema."}\n{"id": "r9", "text": "No edema."}\n', ".jsonl",
              ["0", "false", "r9"], {3: "missing_id", 4: "missing_id", 5: "unreadable_row", 6: "blank_line",
                                     7: "unreadable_row", 8: "unreadable_row"}, 9),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_structure_rows_never_shift(case, tmp_path, capsys):
    data, suffix, ids, rejects, n = CSV_CASES[case]
    src = tmp_path / f"reports{suffix}"
    src.write_bytes(data)
    rc, err = structure(capsys, src, tmp_path / "out")
    assert rc == 0 and err == ""
    assert structured(tmp_path / "out") == (ids, rejects)
    assert_sound(tmp_path / "out", {src.name: n})


def test_structure_parquet_ids(tmp_path, capsys):
    src = tmp_path / "reports.parquet"
    pd.DataFrame({"id": ["0", None, "false", "nan"], "text": ["No edema."] * 4}).to_parquet(src)
    assert structure(capsys, src, tmp_path / "out")[0] == 0
    assert structured(tmp_path / "out") == (["0", "false"], {2: "missing_id", 4: "missing_id"})
    pd.DataFrame({"id": [1.5, np.nan], "text": ["No edema.", "No effusion."]}).to_parquet(src)
    assert structure(capsys, src, tmp_path / "out")[0] == 0
    assert structured(tmp_path / "out") == (["1.5"], {2: "missing_id"})
    assert_sound(tmp_path / "out", {src.name: 2})


ERRORS = {  # name: (file bytes, file ending, --id-column, what stderr must say)
    "empty": (b"", ".csv", "id", r"reports\.csv: empty file"),
    "bom and blank lines only": (b"\xef\xbb\xbf\n \n", ".csv", "id", r"reports\.csv: empty file"),
    "empty jsonl": (b"", ".jsonl", "id", r"reports\.jsonl: empty file"),
    "utf-16 without bom": ("id,text\nr1,No edema.\n".encode("utf-16-le"), ".csv", "id", "NUL bytes: UTF-16"),
    "utf-16, broken": (codecs.BOM_UTF16_LE + "id,text\n".encode("utf-16-le") + b"\x00", ".csv", "id",
                       "not valid utf-16"),
    "wrong id column": (b"id,text\nr1,No edema.\n", ".csv", "rid",
                        r"no column\(s\) \['rid'\]; the header \(line 1\) has \['id', 'text'\]"),
    "wrong id column, a broken line": (b'{broken\n{"id": 1, "text": "No edema."}\n', ".jsonl", "rid",
                                       r"no column\(s\) \['rid'\]; its JSON objects have \['id', 'text'\]"),
    "unknown ending": (b"id,text\n", ".txt", "id", r"expected one of \['.csv'"),
    "not parquet": (b"id,text\n", ".parquet", "id", "not a readable Parquet file"),
    "broken gzip": (gzip.compress(BLANKS.encode())[:-12], ".csv.gz", "id", r"reports\.csv\.gz: broken gzip data"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_structure_refuses_bad_files_and_keeps_old_output(case, tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text("id,text\nr1,No edema.\n")
    out = tmp_path / "out"
    assert structure(capsys, good, out)[0] == 0
    before = relative_snapshot(out)
    data, suffix, id_column, message = ERRORS[case]
    src = tmp_path / f"reports{suffix}"
    src.write_bytes(data)
    rc, err = structure(capsys, src, out, id_column)
    assert rc == 2 and len(err.splitlines()) == 1, err  # one line, no traceback
    assert re.search(message, err), err
    assert "edema" not in err  # never report text
    assert_sound(out, before=before)


def test_structure_refuses_output_over_input(tmp_path, capsys):
    src = tmp_path / "reports.parquet"
    pd.DataFrame({"id": ["a"], "text": ["No edema."]}).to_parquet(src)
    (tmp_path / "link.parquet").symlink_to(src)
    (tmp_path / "x.rejects.parquet").symlink_to(src)
    before = relative_snapshot(tmp_path)
    for out in (src, tmp_path / "link.parquet", tmp_path / "x.parquet"):
        rc = main(["structure", str(src), "--id-column", "id", "--text-column", "text", "--out", str(out)])
        assert rc == 2 and "is the input" in capsys.readouterr().err
    missing = main(["structure", str(tmp_path / "nope.csv"), "--id-column", "id", "--text-column", "text",
                    "--out", str(tmp_path / "o.parquet")])
    assert missing == 2 and "nope.csv: not found" in capsys.readouterr().err
    folder = main(["structure", str(tmp_path), "--id-column", "id", "--text-column", "text",
                   "--out", str(tmp_path / "o.parquet")])
    assert folder == 2 and "not a file" in capsys.readouterr().err
    assert_sound(tmp_path, before=before)


# ---- label tables and per-row files of the dataset kinds -------------------------------------------------------

def dataset(tmp_path: Path, name: str) -> Path:
    """A copy of fixture ``name`` under ``tmp_path/data``, and a file holding the sentinel outside it."""
    (tmp_path / "outside").mkdir(exist_ok=True)
    (tmp_path / "outside" / "secret.txt").write_text(f"FINDINGS: {SENTINEL}. No effusion.\n")
    return Path(shutil.copytree(FX / name, tmp_path / "data" / name))


def records(tmp_path: Path, kind: str, root: Path, **options) -> tuple[pd.DataFrame, dict[int, str], dict]:
    """The records stage (``vivid_med.records.run``) on one source into ``tmp_path/out``: (records, the rejects of
    its first label file as {row: reason}, counts)."""
    params = RecordsParams.model_validate({"llm_extractor": None, "report_text": "keep", "sources": {
        "fx": {"kind": kind, "root": str(root), **options}}})
    counts = run_records(params, PRETRAIN_FIELDS, tmp_path / "out")["fx"]
    rej = pd.read_parquet(tmp_path / "out" / "fx.rejects.parquet")
    first = rej[rej["source_file"] == rej["source_file"].iloc[0]] if len(rej) else rej
    return pd.read_parquet(tmp_path / "out" / "fx.parquet"), dict(zip(first["row"], first["reason"])), counts


def edit_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_chexpert_blank_and_ragged_rows_keep_row_numbers(tmp_path):
    root = dataset(tmp_path, "chexpert") / "CheXpert-v1.0-small"
    edit_lines(root / "train.csv", lambda ls: [ls[0], ls[1].replace("Female", "Female,x"), ls[2], "", *ls[3:]])
    rec, rej, _ = records(tmp_path, "chexpert", root)
    assert rej == {1: "ragged_row", 3: "blank_line", 5: "conflicting_labels", 6: "conflicting_labels",
                   7: "unknown_label", 8: "duplicate_image", 9: "missing_image", 10: "path_outside_root"}
    assert len(rec) == 3
    assert_sound(tmp_path / "out", {"train.csv": 10, "valid.csv": 1})


def test_chexpert_encodings_give_the_same_records(tmp_path):
    root = dataset(tmp_path, "chexpert") / "CheXpert-v1.0-small"
    plain = records(tmp_path, "chexpert", root)[0]
    train = (root / "train.csv").read_text()
    (root / "train.csv").write_bytes(codecs.BOM_UTF16_LE + train.encode("utf-16-le"))
    (root / "valid.csv").write_bytes(codecs.BOM_UTF8 + (root / "valid.csv").read_bytes())
    pd.testing.assert_frame_equal(records(tmp_path, "chexpert", root)[0], plain)
    assert_sound(tmp_path / "out", {"train.csv": 9, "valid.csv": 1})


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_chexpert_empty_valid_csv_names_it(tmp_path, content):
    root = dataset(tmp_path, "chexpert") / "CheXpert-v1.0-small"
    records(tmp_path, "chexpert", root)
    before = relative_snapshot(tmp_path / "out")
    (root / "valid.csv").write_bytes(content)
    with pytest.raises(InputFileError, match=r"valid\.csv: empty file"):
        records(tmp_path, "chexpert", root)
    assert_sound(tmp_path / "out", before=before)


def test_image_path_that_is_a_directory(tmp_path):
    root = dataset(tmp_path, "chexpert") / "CheXpert-v1.0-small"
    image = root / "train/patient00002/study1/view1_frontal.jpg"
    image.unlink()
    image.mkdir()
    _, rej, _ = records(tmp_path, "chexpert", root)
    assert rej[3] == rej[7] == "not_a_file"
    assert_sound(tmp_path / "out", {"train.csv": 9, "valid.csv": 1})


def test_mimic_blank_and_ragged_metadata_rows(tmp_path):
    root = dataset(tmp_path, "mimic")
    edit_lines(root / "mimic-cxr-2.0.0-metadata.csv", lambda ls: [*ls, "", "d9a,10000009,50000009"])
    edit_lines(root / "mimic-cxr-2.0.0-split.csv", lambda ls: [ls[0], "", *ls[1:], ""])  # blank lines: no data
    rec, rej, _ = records(tmp_path, "mimic", root, labels="reports")
    assert list(rec["image_id"]) == ["d1a", "d1b", "d7a"]
    assert rej == {3: "empty_report", 4: "empty_report", 5: "no_usable_section", 6: "not_utf8", 7: "missing_report",
                   9: "missing_image", 10: "unknown_split", 11: "duplicate_image", 12: "blank_line",
                   13: "ragged_row"}
    assert_sound(tmp_path / "out", {"mimic-cxr-2.0.0-metadata.csv": 13})


def test_mimic_ragged_lookup_table_is_an_error_naming_its_row(tmp_path):
    root = dataset(tmp_path, "mimic")
    edit_lines(root / "mimic-cxr-2.0.0-chexpert.csv", lambda ls: [*ls[:3], ls[3] + ",1.0", *ls[4:]])
    with pytest.raises(InputFileError, match=r"mimic-cxr-2.0.0-chexpert.csv: row 3: ragged_row \(line 4: 17 fields"):
        records(tmp_path, "mimic", root, labels="table")


@pytest.mark.parametrize("labels", ["reports", "table"])
def test_mimic_report_symlinked_outside_the_root_is_not_read(tmp_path, labels):
    root = dataset(tmp_path, "mimic")
    report = root / "files/p10/p10000001/s50000001.txt"
    report.unlink()
    report.symlink_to(tmp_path / "outside" / "secret.txt")
    rec, rej, _ = records(tmp_path, "mimic", root, labels=labels)
    if labels == "reports":
        assert rej[1] == rej[2] == "path_outside_root"
    else:
        assert rec["report"][:2].isna().all()  # the labels come from the table; the report is not read
    assert_sound(tmp_path / "out", {"mimic-cxr-2.0.0-metadata.csv": 11})


def test_mimic_report_symlink_inside_the_root_and_report_directory(tmp_path):
    root = dataset(tmp_path, "mimic")
    report = root / "files/p10/p10000001/s50000001.txt"
    report.unlink()
    report.symlink_to(root / "files/p11/p11000004/s50000007.txt")
    (root / "files/p10/p10000002/s50000004.txt").unlink()
    (root / "files/p10/p10000002/s50000004.txt").mkdir()
    rec, rej, _ = records(tmp_path, "mimic", root, labels="reports")
    assert list(rec["image_id"]) == ["d1a", "d1b", "d7a"] and rej[5] == "not_a_file"
    assert_sound(tmp_path / "out", {"mimic-cxr-2.0.0-metadata.csv": 11})


def test_leakage_rejects_the_patient_and_is_counted(tmp_path):
    root = dataset(tmp_path, "mimic")
    edit_lines(root / "mimic-cxr-2.0.0-split.csv", lambda ls: [ln.replace("d2a,50000002,10000001,train",
                                                                          "d2a,50000002,10000001,test") for ln in ls])
    rec, rej, counts = records(tmp_path, "mimic", root, labels="table")
    assert rej[1] == rej[2] == rej[3] == "leakage" and "10000001" not in set(rec["patient_id"])
    assert "11 input = 2 accepted + 9 rejected" in counts_line(counts) and "'leakage': 3" in counts_line(counts)
    assert_sound(tmp_path / "out", {"mimic-cxr-2.0.0-metadata.csv": 11})


def test_nih_missing_ids_blank_lines_and_utf16(tmp_path):
    root = dataset(tmp_path, "nih")
    edit_lines(root / "Data_Entry_2017.csv", lambda ls: [ls[0], *ls[1:3], ls[3].replace(",2,80,", ",nan,80,"),
                                                         "", *ls[4:]])
    text = (root / "Data_Entry_2017.csv").read_text()
    (root / "Data_Entry_2017.csv").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    rec, rej, _ = records(tmp_path, "nih", root)
    assert rej == {3: "missing_id", 4: "blank_line", 6: "unknown_label", 7: "unknown_label", 8: "unknown_split",
                   9: "missing_image", 10: "duplicate_image"}
    assert len(rec) == 3
    assert_sound(tmp_path / "out", {"Data_Entry_2017.csv": 10})
    (root / "test_list.txt").write_bytes(b"00000001_000.png\n\xff\n")
    with pytest.raises(InputFileError, match=r"test_list.txt: line 2 is not UTF-8"):
        records(tmp_path, "nih", root)


def test_chexpert_plus_ragged_row_and_broken_label_file(tmp_path):
    root = dataset(tmp_path, "chexpert_plus")
    edit_lines(root / "df_chexpert_plus_240401.csv", lambda ls: [*ls, "8,train/patient00009/study1/view1.jpg"])
    rec, rej, _ = records(tmp_path, "chexpert_plus", root)
    assert rej[9] == "ragged_row"
    assert_sound(tmp_path / "out", {"df_chexpert_plus_240401.csv": 9})
    labels = root / "chexbert_labels" / "impression_fixed.json"
    labels.write_bytes(labels.read_bytes().replace(b'"Cardiomegaly": 1.0', b'"Cardiomegaly": "\xff"', 1))
    with pytest.raises(InputFileError, match=r"impression_fixed.json: row 1: not_utf8 \(column 'Cardiomegaly'"):
        records(tmp_path, "chexpert_plus", root, labels="table")


def test_openi_broken_files(tmp_path):
    r2gen = dataset(tmp_path, "openi") / "r2gen"
    (r2gen / "annotation.json").write_text('{"train": [{"id": "CXR1",\n "report": }]}')
    with pytest.raises(InputFileError, match=r"annotation.json: not valid JSON \(line 2"):
        records(tmp_path, "openi", r2gen)
    xml = tmp_path / "data" / "openi" / "ecgen" / "ecgen-radiology"
    (xml / "2.xml").write_text("<eCitation><Abstract>")
    (tmp_path / "outside" / "9.xml").write_text((xml / "1.xml").read_text().replace("Cardiomegaly", SENTINEL))
    (xml / "9.xml").symlink_to(tmp_path / "outside" / "9.xml")
    (xml / "8.xml").mkdir()
    _, rej, _ = records(tmp_path, "openi", xml.parent)
    got = pd.read_parquet(tmp_path / "out" / "fx.rejects.parquet")
    assert dict(zip(got["source_file"], got["reason"])) == {
        "ecgen-radiology/2.xml": "unreadable_row", "ecgen-radiology/3.xml": "missing_image",
        "ecgen-radiology/8.xml": "not_a_file", "ecgen-radiology/9.xml": "path_outside_root"}
    assert_sound(tmp_path / "out", {f"ecgen-radiology/{n}.xml": 2 if n == 1 else 1 for n in (1, 2, 3, 8, 9)})


@pytest.mark.parametrize("kind, header", [("kermany", "path,label,patient_key"),
                                          ("nih_png", "path,finding_labels,patient_id")])
def test_image_set_label_tables_refuse_a_ragged_row(tmp_path, kind, header):
    (tmp_path / "labels.csv").write_text(f"{header}\nimages/a.png,x,p1\nimages/b.png,y\n")
    with pytest.raises(InputFileError, match=r"labels.csv: row 2: ragged_row \(line 3: 2 fields, the header has 3"):
        DATASETS[kind].at(tmp_path).image_set()


# ---- fault injection: SIGKILL at failpoints --------------------------------------------------------------------

def drop_last_row(project: Path) -> None:
    """The input change between the old and the new outputs of ``stage_project``."""
    edit_lines(project / "mimic/mimic-cxr-2.0.0-metadata.csv", lambda ls: ls[:-1])


def visible(files: dict[str, str]) -> dict[str, str]:
    """``files`` without the hidden ``*.tmp`` files a SIGKILLed write leaves (never outputs); any other hidden
    file fails."""
    hidden = [k for k in files if Path(k).name.startswith(".")]
    assert all(k.endswith(".tmp") for k in hidden), hidden
    return {k: v for k, v in files.items() if k not in hidden}


def _stage_outputs(project: Path) -> dict[str, str]:
    return visible({**relative_snapshot(project / "data/records"),
                    **{f"metrics/{k}": v for k, v in relative_snapshot(project / "metrics").items()}})


@pytest.fixture(scope="module")
def stage_project(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A scratch project (fixture sources: nih, a copy of mimic) with the records stage run once (the old
    outputs); and the outputs of a run after a metadata row was dropped (the new outputs)."""
    old = tmp_path_factory.mktemp("stage_old")
    shutil.copytree(FX / "mimic", old / "mimic")
    write_params(old, replace={"records": {"llm_extractor": None, "report_text": "keep", "sources": {
        "fx_nih": {"kind": "nih", "root": str(FX / "nih")},
        "fx_mimic": {"kind": "mimic", "root": "mimic", "labels": "reports"}}}})
    assert run(old, "-m", "stages.records").returncode == 0
    new = tmp_path_factory.mktemp("stage_new")
    shutil.copytree(old, new, dirs_exist_ok=True)
    drop_last_row(new)
    assert run(new, "-m", "stages.records").returncode == 0
    return old, _stage_outputs(old), _stage_outputs(new)


SLOW = pytest.mark.slow  # the same write path as commit:fx_mimic.parquet (inside the folder swapped in at the end)


@pytest.mark.parametrize("point", ["records:fx_mimic", "commit:fx_mimic.parquet",
                                   pytest.param("commit:fx_mimic.rejects.parquet", marks=SLOW),
                                   pytest.param("commit:fx_mimic.json", marks=SLOW), "commit:records",
                                   "commit:records.json"])
def test_records_stage_killed_keeps_old_or_new_outputs(point, stage_project, tmp_path):
    old_project, old, new = stage_project
    assert old != new
    project = Path(shutil.copytree(old_project, tmp_path / "p"))
    drop_last_row(project)
    assert killed(run(project, "-m", "stages.records", failpoint=point))
    got = _stage_outputs(project)
    if point == "commit:records.json":  # the folder is swapped in; the metrics are written after it
        assert got == {**new, "metrics/records.json": old["metrics/records.json"]}
    else:
        assert got == old
    proc = run(project, "-m", "stages.records")
    assert proc.returncode == 0, proc.stderr
    assert _stage_outputs(project) == new
    assert_sound(project / "data/records", {"Data_Entry_2017.csv": 9, "mimic-cxr-2.0.0-metadata.csv": 10})


def test_records_stage_names_a_bad_file_in_one_line_and_keeps_old_outputs(stage_project, tmp_path):
    old_project, old, _ = stage_project
    project = Path(shutil.copytree(old_project, tmp_path / "p"))
    (project / "mimic/mimic-cxr-2.0.0-metadata.csv").write_bytes(b"")
    proc = run(project, "-m", "stages.records")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"records: {Path('mimic/mimic-cxr-2.0.0-metadata.csv')}: empty file (no header line)"
    assert _stage_outputs(project) == old


STRUCTURE = ["-m", "vivid_med.cli", "structure", "reports.csv", "--id-column", "id", "--text-column", "text",
             "--out", "out/reports.parquet"]
NEW_REPORTS = "id,text\nr1,No effusion.\nr2,No edema.\n\nr4,\n"


@pytest.fixture(scope="module")
def cli_project(tmp_path_factory) -> tuple[Path, dict, dict]:
    """reports.csv structured once (old outputs), and the outputs for ``NEW_REPORTS`` (new)."""
    old = tmp_path_factory.mktemp("cli_old")
    (old / "reports.csv").write_text("id,text\nr1,No effusion.\nr2,\nr3,Mild cardiomegaly.\n")
    assert run(old, *STRUCTURE).returncode == 0
    new = tmp_path_factory.mktemp("cli_new")
    shutil.copytree(old, new, dirs_exist_ok=True)
    (new / "reports.csv").write_text(NEW_REPORTS)
    assert run(new, *STRUCTURE).returncode == 0
    return old, relative_snapshot(old / "out"), relative_snapshot(new / "out")


@pytest.mark.parametrize("point", ["structure:extracted", "commit:reports.rejects.parquet", "commit:reports.parquet"])
def test_structure_killed_keeps_old_or_new_outputs(point, cli_project, tmp_path):
    old_project, old, new = cli_project
    project = Path(shutil.copytree(old_project, tmp_path / "p"))
    (project / "reports.csv").write_text(NEW_REPORTS)
    assert killed(run(project, *STRUCTURE, failpoint=point))
    got = visible(relative_snapshot(project / "out"))
    # rejects are committed first: a new accepted table never sits beside old rejects
    expected = {**old, "reports.rejects.parquet": new["reports.rejects.parquet"]} \
        if point == "commit:reports.parquet" else old
    assert got == expected
    assert run(project, *STRUCTURE).returncode == 0
    assert visible(relative_snapshot(project / "out")) == new
    assert_sound(project / "out", {"reports.csv": 4}, killed_before=True)


@pytest.mark.parametrize("name", ["v" * 300 + ".jpg", "d" * 300 + "/view1_frontal.jpg"])
def test_image_path_longer_than_the_file_system_allows_is_a_missing_image(tmp_path, name):
    """A name no file can have: a counted missing_image, not a crash of the whole stage."""
    root = dataset(tmp_path, "chexpert") / "CheXpert-v1.0-small"
    edit_lines(root / "train.csv", lambda ls: [ls[0], ls[1].replace("view1_frontal.jpg", name, 1), *ls[2:]])
    _, rej, _ = records(tmp_path, "chexpert", root)
    assert rej[1] == "missing_image"
    assert_sound(tmp_path / "out", {"train.csv": 9, "valid.csv": 1})


def test_image_path_with_a_nul_byte_is_a_missing_image(tmp_path):
    """(A CSV with a NUL byte is refused whole by the table reader; JSON Lines and Parquet sources can carry one.)"""
    (tmp_path / "a.png").write_bytes(b"png")
    df = pd.DataFrame({"image_path": ["a.png", "a\x00.png", "sub/a\x00.png"], "reason": None, "detail": None})
    check_paths(df, tmp_path)
    assert df["reason"].tolist() == [None, "missing_image", "missing_image"]
