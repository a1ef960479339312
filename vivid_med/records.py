"""Adapter rows -> UMS records (one per image) + rejects, by label table or by report text; ``run`` is the
records stage as a library call.

Label-table route (the paper's): states come from the table's codes (present / absent / uncertain / null,
``vivid_med.states``). A record is a pure function of (codes, view, label file), so it is assembled once per
distinct key from pieces Pydantic made and broadcast (equal to validating every row, tested): 223k rows in seconds.
Report route (``vivid_med.reports``): the extractor reads each distinct report once; states carry evidence
spans checked against the report. Every input row ends up accepted or in the rejects with a reason.

    >>> params = RecordsParams.model_validate({"sources": {"demo_nih": {"kind": "nih", "root": "data/demo/nih"}},
    ...                                        "llm_extractor": None, "report_text": "keep"})
    >>> metrics = run(params, PRETRAIN_FIELDS, Path("data/records"))   # {name: counts}
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from vivid_med import ums
from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
from vivid_med.io import atomic_dir, failpoint, write_json
from vivid_med.params import ParamsError, PositiveInt, StrictParams
from vivid_med.reports import TextExtractor, report_records
from vivid_med.sources import RecordOptions, RecordSourceSpec, SourceRows, open_dataset
from vivid_med.sources.base import file_inside, is_plain, is_synthetic, plain_kind
from vivid_med.sources.cxr import reject_where
from vivid_med.sources.tablefile import is_missing_id
from vivid_med.states import STATE_OF_CODE
from vivid_med.tables import RECORDS_SCHEMA, REJECTS_SCHEMA, Reason, write_records, write_rejects
from vivid_med.ums import SCHEMA_VERSION

_VIEW_CODES = {None: 0, "PA": 1, "AP": 2, "LAT": 3}


class LlmExtractorParams(StrictParams):
    """An LLM proposer for the first ``max_reports`` distinct reports (null: all); its verified claims override
    the rules."""

    model: str
    max_reports: PositiveInt | None


class RecordsParams(StrictParams):
    """The ``records:`` section: ``sources`` (name -> a record-source kind and its options, ``vivid_med.sources``)
    and ``llm_extractor`` (null, or an LLM proposer)."""

    sources: dict[str, RecordSourceSpec]
    llm_extractor: LlmExtractorParams | None
    report_text: Literal["keep", "drop"]  # drop: no report text in the records (report null, evidence offsets only)


def check_paths(df: pd.DataFrame, root: Path) -> None:
    """Reject rows whose image path escapes ``root`` (symlinks included), names nothing, or names a directory or
    another non-file (each distinct path checked once).

    A relative path in normal form (no ``..``) whose directories are real (no symlinks) stays inside the
    root, so one ``lstat`` per file and per directory decides it; any other path goes through ``file_inside``.
    """
    todo = df["reason"].isna().to_numpy()
    bad: dict[str, tuple[Reason, str]] = {}
    dirs: dict[str, str] = {}
    for rel in tqdm(pd.unique(df.loc[todo, "image_path"]), desc="image paths", leave=False, mininterval=5,
                    disable=None):
        norm = posixpath.normpath(rel)
        kind = plain_kind(str(root), rel, dirs) if is_plain(rel) else "other"
        if kind == "file":
            continue
        escapes = norm.startswith("/") or norm == ".." or norm.startswith("../")
        problem = {"missing": Reason.MISSING_IMAGE, "dir": Reason.NOT_A_FILE}.get(kind) or \
            (Reason.PATH_OUTSIDE_ROOT if escapes else file_inside(root, rel, Reason.MISSING_IMAGE)[1])
        if problem is not None:
            bad[rel] = (problem, _PATH_DETAIL[problem].format(rel=rel))
    for reason in _PATH_DETAIL:
        paths = {p: d for p, (r, d) in bad.items() if r is reason}
        mask = df["image_path"].isin(paths.keys()).to_numpy()
        reject_where(df, mask, reason, df["image_path"].map(paths))


_PATH_DETAIL = {Reason.PATH_OUTSIDE_ROOT: "image path {rel!r} escapes the dataset root",
                Reason.MISSING_IMAGE: "no file {rel}", Reason.NOT_A_FILE: "{rel} is not a file"}


def check_leakage(df: pd.DataFrame) -> None:
    """Reject every live row of a patient whose live rows lie in more than one split (``leakage``): no patient
    reaches two splits, and the rest proceeds."""
    live = df["reason"].isna()
    pairs = df.loc[live, ["patient_id", "split"]].drop_duplicates()
    pairs = pairs[pairs["patient_id"].duplicated(keep=False)]
    if len(pairs):
        leaking = pairs.groupby("patient_id")["split"].agg(lambda s: ", ".join(sorted(s)))
        mask = (live & df["patient_id"].isin(leaking.index)).to_numpy()
        reject_where(df, mask, Reason.LEAKAGE, "patient in splits " + df["patient_id"].map(leaking).fillna(""))


def check_duplicates(df: pd.DataFrame, label_key: pd.Series) -> None:
    """Reject a second copy of an image, and every image of a study whose copies disagree on the labels."""
    for col in ("image_id", "image_path"):
        live = df["reason"].isna()
        first_row = df[live].groupby(col, sort=False)["row"].transform("first")
        dup = (df[live].duplicated(col)).reindex(df.index, fill_value=False).to_numpy()
        detail = df["source_file"] + f": same {col} as row " + first_row.reindex(df.index).astype("Int64").astype(str)
        reject_where(df, dup, Reason.DUPLICATE_IMAGE, detail)
    live = df["reason"].isna()
    n_labels = label_key[live].groupby(df.loc[live, "study_id"]).nunique()
    conflict = df["study_id"].map(n_labels).fillna(0).to_numpy() > 1
    reject_where(df, conflict & live.to_numpy(), Reason.CONFLICTING_LABELS,
                 "images of this study have different labels / reports")


def _distinct(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a 2-D int8 array (sorted) and, per input row, the index of its distinct row."""
    key = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel()
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return rows[first], inverse.ravel()


def _record_shell(view: str | None, label_file: str) -> tuple[str, str]:
    """The JSON of a label-table record before and after its findings object (made and dumped by Pydantic)."""
    rec = ums.cxr_record({}, view, ums.provenance("label_table", label_file=label_file))
    text, marker = rec.model_dump_json(), '"findings":' + rec.findings.model_dump_json()
    assert text.count(marker) == 1
    head, tail = text.split(marker)
    return head + '"findings":', tail


def table_records(codes: np.ndarray, views: pd.Series, label_files: pd.Series, fields: Sequence[str],
                  recheck: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``ums_json`` and ``target_hash`` [N] for label-table rows (codes int8 [N, 14]).

    A label-table record is a pure function of (codes, view, label file), so it is assembled once per distinct
    key from pieces Pydantic made: each state's Finding JSON and the record around the findings (its
    validators pass for every key: CXR, chest, no evidence). This equals validating each row (tested), and
    ``recheck`` distinct records are re-validated from their JSON as a guard.
    """
    view_code = views.map(_VIEW_CODES).fillna(_VIEW_CODES[None]).to_numpy(dtype=np.int8)  # map gives NaN for None
    file_names, file_code = np.unique(label_files.astype(str).to_numpy(), return_inverse=True)
    finding_json = [ums.Finding.of(s).model_dump_json() for s in STATE_OF_CODE]
    ucodes, code_of_row = _distinct(codes)
    findings = ["{" + ",".join(f'"{f}":{finding_json[c]}' for f, c in zip(FIELDS, row)) + "}" for row in ucodes]
    view_of = {v: k for k, v in _VIEW_CODES.items()}
    shells = {(v, f): _record_shell(view_of[v], file_names[f]) for v in set(view_code.tolist())
              for f in set(file_code.ravel().tolist())}
    key = np.stack([code_of_row, view_code, file_code.ravel()], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    out_json = np.empty(len(first), dtype=object)
    for i, (c, v, f) in enumerate(key[first]):
        head, tail = shells[(v, f)]
        out_json[i] = head + findings[c] + tail
    for text in out_json[:recheck]:
        if ums.UMSRecord.model_validate_json(text).model_dump_json() != text:
            raise AssertionError("label-table fast path disagrees with the UMS model")
    cols = [FIELDS.index(f) for f in fields]
    tkey = np.concatenate([codes[:, cols], view_code[:, None]], axis=1)
    tuniq, t_of_row = _distinct(tkey)
    hashes = np.array([ums.target_hash(ums.target_text_of("CXR", view_of[int(r[-1])],
                                                          {f: STATE_OF_CODE[c] for f, c in zip(fields, r[:-1])},
                                                          fields)) for r in tuniq], dtype=object)
    return out_json[inverse.ravel()], hashes[t_of_row]


def build_records(src: SourceRows, dataset: str, labels: str = "table", fields: Sequence[str] = PRETRAIN_FIELDS,
                  check_images: bool = True, extractor: TextExtractor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, rejects) of one source; ``labels`` is ``'table'`` or ``'reports'``.

    records has ``RECORDS_SCHEMA``'s columns in input order; rejects ``REJECTS_SCHEMA``'s.
    Asserts accepted + rejected = input rows.
    """
    df = src.frame.reset_index(drop=True).copy()
    n_input = len(df)
    for col in ("study_id", "patient_id", "image_id"):
        reject_where(df, df[col].map(is_missing_id).to_numpy(bool), Reason.MISSING_ID, f"empty {col}")
    if check_images:
        check_paths(df, src.root)
    if labels == "table":
        if src.labels is None:
            raise ValueError(f"{dataset}: source {src.kind!r} has no label table; use labels: reports")
        codes = src.labels
        label_key = pd.Series([c.tobytes() for c in codes], index=df.index)
    elif labels == "reports":
        label_key = df["report"]
    else:
        raise ValueError(f"{dataset}: labels must be 'table' or 'reports', got {labels!r}")
    check_duplicates(df, label_key)
    if labels == "table":
        live = df["reason"].isna().to_numpy()
        files = df["source_file"] if src.label_file is None else pd.Series(src.label_file, index=df.index)
        out_json = np.full(n_input, None, dtype=object)
        out_hash = np.full(n_input, None, dtype=object)
        out_json[live], out_hash[live] = table_records(codes[live], df.loc[live, "view"], files[live], fields)
        df.loc[df["report_issue"].notna(), "report"] = None
    else:
        codes, out_json, out_hash = report_records(df, fields, extractor)
    check_leakage(df)
    live = df["reason"].isna().to_numpy()
    rec = df.loc[live, ["study_id", "patient_id", "image_id", "image_path", "view", "split", "report"]].copy()
    rec.insert(0, "dataset", dataset)
    rec["ums_json"], rec["target_hash"] = out_json[live], out_hash[live]
    for j, f in enumerate(FIELDS):
        rec[f] = STATE_OF_CODE[codes[live, j]]
    rejects = df.loc[~live, REJECTS_SCHEMA.names].reset_index(drop=True)
    assert len(rec) + len(rejects) == n_input, f"{dataset}: {len(rec)} + {len(rejects)} != {n_input} input rows"
    return rec[RECORDS_SCHEMA.names].reset_index(drop=True), rejects


def summary(records: pd.DataFrame, rejects: pd.DataFrame) -> dict:
    """Counts for the metrics file: input / accepted / rejected, by reason and split, null fraction."""
    slots = records[list(FIELDS)]
    return {
        "input": len(records) + len(rejects), "accepted": len(records), "rejected": len(rejects),
        "rejects_by_reason": {k: int(v) for k, v in rejects["reason"].value_counts().sort_index().items()},
        "images_by_split": {k: int(v) for k, v in records["split"].value_counts().sort_index().items()},
        "studies": int(records["study_id"].nunique()), "patients": int(records["patient_id"].nunique()),
        "distinct_targets": int(records["target_hash"].nunique()),
        "null_fraction": round(float(slots.isna().to_numpy().mean()), 4) if len(records) else None,
    }


def text_extractor(llm: LlmExtractorParams | None) -> TextExtractor:
    """The report extractor: the rules, with an LLM proposer where ``llm`` names one."""
    if llm is None:
        return TextExtractor()
    from vivid_med.extract.llm import load_proposer

    return TextExtractor(load_proposer(llm.model), Path(llm.model).name, llm.max_reports)


def _refuse_overlap(params: RecordsParams, out_dir: Path) -> None:
    """ParamsError when ``out_dir`` (replaced as a whole) and a source root contain one another."""
    out = Path(out_dir).resolve()
    for name, options in params.sources.items():
        root = Path(options.root).resolve()
        if root == out or out in root.parents or root in out.parents:
            raise ParamsError(f"records.sources.{name}: root {options.root} and the output folder {out_dir} overlap "
                             "(the output folder is replaced as a whole)")


def drop_report_text(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` without report text: ``report`` null and every evidence sentence null (each distinct record
    rewritten once); states, targets and offsets unchanged."""
    stripped = {j: ums.without_report_text(j) for j in pd.unique(records["ums_json"])}
    return records.assign(report=None, ums_json=records["ums_json"].map(stripped))


def write_source(name: str, options: RecordOptions, fields: tuple[str, ...], extractor: TextExtractor,
                 out_dir: Path, report_text: str = "keep") -> dict:
    """One source -> ``out_dir/<name>.parquet`` + ``.rejects.parquet``, then ``.json`` (root, counts); its counts.
    ``report_text: drop`` keeps no report text in the records (``drop_report_text``)."""
    records, rejects = build_records(open_dataset(options).records(), name, options.labels, fields,
                                     options.check_images, extractor)
    if report_text == "drop":
        records = drop_report_text(records)
    write_records(records, out_dir / f"{name}.parquet", fields)
    write_rejects(rejects, out_dir / f"{name}.rejects.parquet")
    counts = summary(records, rejects)
    counts["synthetic"] = is_synthetic(options.root)
    info = {"dataset": name, "kind": options.kind, "root": options.root, "labels": options.labels,
            "schema_version": SCHEMA_VERSION, "target_fields": list(fields), **counts}
    write_json(out_dir / f"{name}.json", info, indent=2)
    return counts


def run(params: RecordsParams, fields: Sequence[str], out_dir: Path) -> dict[str, dict]:
    """Every source of ``params`` -> ``out_dir/<name>.parquet`` + ``.rejects.parquet`` + ``.json`` (root, counts);
    ``fields`` are those ``target_hash`` covers. Returns the counts per source (the records metrics).

    ``out_dir`` is replaced as a whole when every source is done (``vivid_med.io.atomic_dir``): a failure or a
    kill leaves the previous folder as it was. Failpoints: ``records:<name>`` before each source is read, then
    ``commit:<file>`` of each file and ``commit:<out_dir's name>``.
    """
    fields = tuple(fields)
    _refuse_overlap(params, out_dir)
    extractor = text_extractor(params.llm_extractor)
    metrics = {}
    with atomic_dir(out_dir) as tmp:
        for name, options in params.sources.items():
            failpoint(f"records:{name}")
            metrics[name] = write_source(name, options, fields, extractor, tmp, params.report_text)
    return metrics
