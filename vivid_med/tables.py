"""The records and rejects tables: explicit pyarrow schemas, reason codes, write/read helpers."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vivid_med.fields import FIELDS
from vivid_med.io import atomic_path
from vivid_med.ums import SCHEMA_VERSION


class Reason(str, Enum):
    """Why an input row did not become a record (the ``reason`` column of a rejects table)."""

    EMPTY_REPORT = "empty_report"            # report empty or whitespace only
    NO_USABLE_SECTION = "no_usable_section"  # only headers / empty sections
    NOT_UTF8 = "not_utf8"                    # report bytes, or a used cell of a table row, are not UTF-8
    MISSING_REPORT = "missing_report"        # the report file does not exist
    UNKNOWN_LABEL = "unknown_label"          # a label value outside 1 / 0 / -1 / blank (or an unknown NIH label)
    MISSING_LABELS = "missing_labels"        # the study has no row in the label table
    UNKNOWN_SPLIT = "unknown_split"          # split value unknown, or the image is on no split list
    MISSING_ID = "missing_id"                # empty study / patient / image id, or one spelled nan / null / NA
    DUPLICATE_IMAGE = "duplicate_image"      # the same image a second time
    DUPLICATE_ID = "duplicate_id"            # the same report id a second time (`vivid-med structure`)
    UNREADABLE_ROW = "unreadable_row"        # bad CSV quoting, a JSONL line that is not an object, broken XML
    CONFLICTING_LABELS = "conflicting_labels"  # one study, different labels
    MISSING_IMAGE = "missing_image"          # image file not found under the dataset root
    PATH_OUTSIDE_ROOT = "path_outside_root"  # an image or report path (or symlink) escapes the dataset root
    UNREADABLE_IMAGE = "unreadable_image"    # not a readable file, an unsupported type, or a frame out of range
    CORRUPT_IMAGE = "corrupt_image"          # the decoder failed on the file's bytes
    INVALID_RECORD = "invalid_record"        # the UMS validator refused the record
    RAGGED_ROW = "ragged_row"                # a CSV row with more or fewer fields than the header
    BLANK_LINE = "blank_line"                # an empty (or whitespace-only) line in a table or JSONL file
    NOT_A_FILE = "not_a_file"                # a directory (or another non-file) where an image / report should be
    TOO_LARGE = "too_large"                  # an image declaring more pixels than images.max_pixels
    BLANK_IMAGE = "blank_image"              # an image (or slice) of one constant value, or all NaN
    LEAKAGE = "leakage"                      # a patient in two splits (every image of that patient is rejected)


def _field_columns() -> list[pa.Field]:
    return [pa.field(f, pa.string(), nullable=True) for f in FIELDS]


_RECORD_BASE = [
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("study_id", pa.string(), nullable=False),
    pa.field("patient_id", pa.string(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("image_path", pa.string(), nullable=False),
    pa.field("view", pa.string(), nullable=True),
    pa.field("split", pa.string(), nullable=False),
    pa.field("report", pa.string(), nullable=True),
    pa.field("ums_json", pa.string(), nullable=False),
    pa.field("target_hash", pa.string(), nullable=False),
]
#: One row per image; field columns hold present / absent / uncertain / null.
RECORDS_SCHEMA = pa.schema(_RECORD_BASE + _field_columns(), metadata={"vivid_med.schema_version": SCHEMA_VERSION})

#: One row per report of the `vivid-med structure` command.
STRUCTURED_SCHEMA = pa.schema([pa.field("study_id", pa.string(), nullable=False)] + _field_columns()
                              + [pa.field("ums_json", pa.string(), nullable=False)],
                              metadata={"vivid_med.schema_version": SCHEMA_VERSION})

#: One row per rejected input row. ``row`` is the 1-based number of the data row in ``source_file``, counted the
#: same way for every file: in a CSV / TSV the records after the header line (a quoted field may span lines; a
#: blank line is a row of its own, rejected as ``blank_line``; blank lines before the header are not rows), in
#: JSON Lines the lines, in Parquet the rows, in a JSON document its entries in file order, in a file holding one
#: report (Open-i XML) that report's images. Details name lines where a row's lines differ from its number.
REJECTS_SCHEMA = pa.schema([
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("row", pa.int64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=True),
], metadata={"vivid_med.schema_version": SCHEMA_VERSION})

_REASONS = {r.value for r in Reason}


def write_table(df: pd.DataFrame, path: str | Path, schema: pa.Schema, metadata: dict | None = None) -> Path:
    """Write ``df`` to Parquet with exactly ``schema``'s columns and types (extra metadata JSON-encoded), atomically:
    a crash leaves the previous file intact (``vivid_med.io.atomic_path``; failpoint ``commit:<file name>``)."""
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    if schema is REJECTS_SCHEMA and not set(df["reason"]).issubset(_REASONS):
        raise ValueError(f"{path}: unknown reason code(s) {sorted(set(df['reason']) - _REASONS)}")
    meta = dict(schema.metadata or {})
    meta.update({f"vivid_med.{k}".encode(): json.dumps(v).encode() for k, v in (metadata or {}).items()})
    table = pa.Table.from_pandas(df[schema.names], schema=schema.with_metadata(meta), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(path: str | Path, schema: pa.Schema) -> pd.DataFrame:
    """Read a table written by ``write_table``; refuses another schema version or missing columns."""
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"vivid_med.schema_version", b"").decode()
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: UMS schema version {version or 'missing'!r}, this code reads {SCHEMA_VERSION!r}")
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return table.select(schema.names).to_pandas()


def table_metadata(path: str | Path) -> dict:
    """The ``vivid_med.*`` metadata of a Parquet file, JSON-decoded (schema_version as a string)."""
    meta = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in meta.items():
        key = k.decode()
        if key.startswith("vivid_med."):
            name = key.removeprefix("vivid_med.")
            out[name] = v.decode() if name == "schema_version" else json.loads(v)
    return out


def write_records(df: pd.DataFrame, path: str | Path, target_fields: tuple[str, ...]) -> Path:
    """Write a records table; ``target_fields`` (the fields ``target_hash`` covers) go into the metadata."""
    return write_table(df, path, RECORDS_SCHEMA, {"target_fields": list(target_fields)})


def read_records(path: str | Path) -> pd.DataFrame:
    """Read a records table (schema version checked)."""
    return read_table(path, RECORDS_SCHEMA)


def write_rejects(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a rejects table (reason codes checked against ``Reason``)."""
    return write_table(df, path, REJECTS_SCHEMA)


def read_rejects(path: str | Path) -> pd.DataFrame:
    """Read a rejects table."""
    return read_table(path, REJECTS_SCHEMA)


def synthetic_datasets(records_dir: str | Path, names) -> list[str]:
    """Those of ``names`` whose records info (``<records_dir>/<name>.json``) says they are synthetic (the demo)."""
    out = []
    for name in names:
        info = Path(records_dir) / f"{name}.json"
        if info.exists() and json.loads(info.read_text()).get("synthetic", False):
            out.append(name)
    return sorted(out)


def counts_line(counts: dict) -> str:
    """'N input = A accepted + R rejected {reason: n}': the line every stage that can reject prints."""
    return (f"{counts['input']} input = {counts['accepted']} accepted + {counts['rejected']} rejected "
            f"{counts['rejects_by_reason']}")
