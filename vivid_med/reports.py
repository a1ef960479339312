"""Report text -> UMS records: the rule extractor (optionally an LLM proposer), evidence checked against the text.

Used by the records stage's report route and by ``vivid-med structure`` (CSV / TSV / JSONL / Parquet files).
Each distinct report is extracted once; rows whose report is unreadable, empty or has no usable section are
rejected with a reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError
from tqdm import tqdm

from vivid_med import ums
from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
from vivid_med.sources.cxr import reject_where, table_frame
from vivid_med.sources.tablefile import is_missing_id, read_rows
from vivid_med.states import NULL_CODE, STATE_OF_CODE, code_of
from vivid_med.tables import REJECTS_SCHEMA, Reason


def finish(record: ums.UMSRecord, fields: Sequence[str]) -> tuple[str, str]:
    """(ums_json, target_hash) of a validated record."""
    return record.model_dump_json(), ums.target_hash(ums.target_text(record, fields))


@dataclass
class TextExtractor:
    """Report text -> states: the rule extractor, and optionally an LLM proposer (``vivid_med.extract.llm``)
    for the first ``llm_max_reports`` distinct reports, whose verified claims override the rules."""

    llm: object | None = None
    llm_name: str = ""
    llm_max_reports: int | None = None
    llm_used: int = 0

    def __call__(self, text: str):
        """(ExtractionResult, Provenance), or a Reason when the report has no usable content."""
        from vivid_med.extract import EXTRACTOR_VERSION, extract_report

        if not text.strip():
            return Reason.EMPTY_REPORT
        use_llm = self.llm is not None and (self.llm_max_reports is None or self.llm_used < self.llm_max_reports)
        result = self.llm.extract(text) if use_llm else extract_report(text)
        if result.no_usable_section:
            return Reason.NO_USABLE_SECTION
        if not use_llm:
            return result, ums.provenance("rule_extractor", extractor_version=EXTRACTOR_VERSION)
        self.llm_used += 1
        return result, llm_provenance(result, f"{EXTRACTOR_VERSION}+llm:{self.llm_name}")


def llm_provenance(result, version: str) -> ums.Provenance:
    """Provenance of an LLM-assisted extraction: ``llm_extractor`` naming the fields it changed, or
    ``rule_extractor`` with the reason the rule result stands (never any report or model text)."""
    from vivid_med.extract import EXTRACTOR_VERSION

    adopted = [f for f in FIELDS if str(result.provenance.get(f, "")).startswith("llm: verified")]
    if adopted:
        return ums.provenance("llm_extractor", extractor_version=version, note="llm fields: " + ",".join(adopted))
    reason = str(result.provenance.get("_llm", "rule result stands: no verified llm claim"))
    return ums.provenance("rule_extractor", extractor_version=EXTRACTOR_VERSION,
                          note=":".join(reason.split(":")[:2]).strip())


def _text_record(text: str, view: str | None, result, prov: ums.Provenance, fields: tuple[str, ...]):
    """(codes [14], ums_json, target_hash) of one report's extraction, its evidence checked against the text."""
    codes = np.array([code_of(result.states[f]) for f in FIELDS], dtype=np.int8)
    evidence = {f: ums.Evidence(sentence=text[e.sentence_start:e.sentence_end], sentence_index=e.sentence_index,
                                sentence_start=e.sentence_start, sentence_end=e.sentence_end,
                                start=e.start, end=e.end) for f, e in result.evidence.items()}
    record = ums.cxr_record(dict(zip(FIELDS, STATE_OF_CODE[codes])), view, prov, evidence)
    record.check_evidence(text)
    return (codes, *finish(record, fields))


def report_records(df: pd.DataFrame, fields: tuple[str, ...],
                   extractor: TextExtractor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """codes [N, 14], ``ums_json`` [N], ``target_hash`` [N] for rows without a reason, from their reports.

    Sets ``reason`` on rows whose report is unreadable, empty, has no usable section or gives an invalid record
    (e.g. an evidence span outside its sentence); each distinct report is extracted once.
    """
    extractor = extractor or TextExtractor()
    for issue in df["report_issue"].dropna().unique():
        reject_where(df, (df["report_issue"] == issue).to_numpy(), Reason(issue), f"report: {issue}")
    no_text = df["report"].map(lambda t: not isinstance(t, str)).to_numpy()
    reject_where(df, no_text, Reason.EMPTY_REPORT, "no report text")
    codes = np.full((len(df), len(FIELDS)), NULL_CODE, dtype=np.int8)
    out_json = np.full(len(df), None, dtype=object)
    out_hash = np.full(len(df), None, dtype=object)
    extracted: dict[str, object] = {}
    built: dict[tuple[str, str | None], object] = {}
    live = np.flatnonzero(df["reason"].isna().to_numpy())
    for i in tqdm(live, desc="reports", leave=False, mininterval=5, disable=None):
        text, view = df.at[i, "report"], df.at[i, "view"]
        if text not in extracted:
            extracted[text] = extractor(text)
        got = extracted[text]
        if isinstance(got, Reason):
            df.at[i, "reason"], df.at[i, "detail"] = got.value, f"report: {got.value}"
            continue
        if (text, view) not in built:
            try:
                built[(text, view)] = _text_record(text, view, *got, fields)
            except (ValidationError, ValueError) as e:  # never echo report text: keep the error's first line
                msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e).splitlines()[0]
                built[(text, view)] = f"{type(e).__name__}: {msg}"
        done = built[(text, view)]
        if isinstance(done, str):
            df.at[i, "reason"], df.at[i, "detail"] = Reason.INVALID_RECORD.value, done
            continue
        codes[i], out_json[i], out_hash[i] = done
    return codes, out_json, out_hash


def read_report_file(path: str | Path, id_column: str, text_column: str) -> pd.DataFrame:
    """A CSV / TSV / JSONL / Parquet report file (``tablefile.read_rows``: nothing shifts, ids are text) as a
    frame of ``frame()`` columns, one row per input row; blank, ragged, unreadable or non-UTF-8 rows carry their
    reason. A missing column is an ``InputFileError`` naming the columns found."""
    table = read_rows(path, (id_column, text_column))
    dash = ["-"] * len(table)
    return table_frame(table, study_id=table[id_column].str.strip(), patient_id=dash, image_id=dash,
                       image_path=dash, split=dash, report=table[text_column])


def structure_reports(df: pd.DataFrame, fields: tuple[str, ...] = PRETRAIN_FIELDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(structured, rejects) of a report frame from ``read_report_file``: one row per accepted report
    (``study_id``, the 14 field states, ``ums_json``); a repeated id is a ``duplicate_id`` reject."""
    df = df.reset_index(drop=True).copy()
    reject_where(df, df["study_id"].map(is_missing_id).to_numpy(bool), Reason.MISSING_ID, "empty id")
    live = df["reason"].isna()
    first = df[live].groupby("study_id", sort=False)["row"].transform("first").reindex(df.index)
    dup = df[live].duplicated("study_id").reindex(df.index, fill_value=False).to_numpy()
    reject_where(df, dup, Reason.DUPLICATE_ID, "same id as row " + first.astype("Int64").astype(str))
    codes, out_json, _ = report_records(df, fields)
    live = df["reason"].isna().to_numpy()
    out = df.loc[live, ["study_id"]].copy()
    for j, f in enumerate(FIELDS):
        out[f] = STATE_OF_CODE[codes[live, j]]
    out["ums_json"] = out_json[live]
    rejects = df.loc[~live, REJECTS_SCHEMA.names].reset_index(drop=True)
    assert len(out) + len(rejects) == len(df), f"{len(out)} + {len(rejects)} != {len(df)} input rows"
    return out.reset_index(drop=True), rejects
