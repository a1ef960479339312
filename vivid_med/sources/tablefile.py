"""Reading the table files datasets ship and report files (CSV / TSV, optionally .gz; JSON Lines; Parquet) so that
nothing shifts or vanishes silently.

Every data row (``tables.REJECTS_SCHEMA`` defines the row number) comes back in file order with its 1-based
``row`` and, where it is not a usable row, a reason: ``blank_line``, ``ragged_row`` (more or fewer fields than
the header), ``unreadable_row`` (bad quoting, a JSON line that is not an object, a list where text should be) or
``not_utf8`` (a kept cell whose bytes are not UTF-8). Cells are text as written (``0``, ``false`` stay text);
a row with a reason has '' in every cell, so columns never shift.

Encodings: UTF-8 with or without a byte-order mark; UTF-16 and UTF-32 with a BOM are decoded. An empty file,
NUL bytes without a BOM (UTF-16 without one, or a binary file), a missing column or broken compression is an
``InputFileError`` naming the file and the line or the columns found. Errors and details name files, rows, lines
and columns, never cell content (it may be patient data).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vivid_med.tables import Reason

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept as surrogate escapes
_NUL = b"\x00"
_SNIFF = 1 << 16  # bytes read to find a byte-order mark, or NUL bytes where there is none
_UNCLOSED = "a quoted field is not closed before the end of the file"
#: Text that spells a missing value (as software writes NaN / None / NA); an id spelled so is ``missing_id``.
MISSING_TEXT = frozenset({"", "nan", "-nan", "none", "null", "<na>", "nat", "na", "n/a", "#n/a"})


class InputFileError(ValueError):
    """A file that cannot be read as the table it should be; the message names the file and the line or columns."""


def is_missing_id(value: object) -> bool:
    """True for an id that is absent: not text, blank, or a missing-value spelling (``MISSING_TEXT``)."""
    return not isinstance(value, str) or value.strip().lower() in MISSING_TEXT


def undecoded(text: str) -> bool:
    """True where ``text`` holds bytes that were not UTF-8 (read by ``open_text`` as surrogate escapes)."""
    return _UNDECODED.search(text) is not None


@dataclass
class TableFile:
    """One file's data rows in file order. ``cells``: the kept columns as text ('' in a row with a reason);
    ``row``: 1-based row numbers; ``reason`` / ``detail``: None, or why the row is not usable."""

    path: Path
    cells: pd.DataFrame
    row: np.ndarray
    reason: list[str | None]
    detail: list[str | None]

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, column: str) -> pd.Series:
        return self.cells[column]

    @property
    def name(self) -> str:
        return self.path.name


def _existing_file(path: str | Path) -> Path:
    """``path``, or FileNotFoundError / InputFileError (a folder or another non-file) naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    return path


@contextmanager
def open_text(path: str | Path, newline: str | None = "") -> Iterator[TextIO]:
    """``path`` (optionally .gz) as text in the encoding its byte-order mark names; UTF-8 without one, bytes that
    are not UTF-8 kept as surrogate escapes (so a row, not the file, is refused). Decoding and gzip failures
    become ``InputFileError`` naming the file."""
    path = _existing_file(path)
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    try:
        head = raw.read(_SNIFF)
        raw.seek(0)
        encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8")
        if encoding == "utf-8" and _NUL in head:
            line = head[:head.index(_NUL)].count(b"\n") + 1
            raise InputFileError(f"{path}: line {line} has NUL bytes: UTF-16 or UTF-32 without a byte-order mark, "
                                 "or not a text file; save it as UTF-8")
        errors = "surrogateescape" if encoding.startswith("utf-8") else "strict"
        with io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline=newline) as text:
            yield text
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not valid {e.encoding} after its byte-order mark; save it as UTF-8") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputFileError(f"{path}: broken gzip data ({type(e).__name__})") from None
    finally:
        raw.close()


def _records(reader) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(first line, fields or None, why unreadable) of every CSV record left in ``reader``."""
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            why = _UNCLOSED if "unexpected end of data" in str(e) else str(e)  # csv's messages quote no content
            yield start, None, f"lines {start}-{reader.line_num}: {why}"
            continue
        yield start, fields, None


def _is_blank(fields: list) -> bool:
    return not fields or (len(fields) == 1 and isinstance(fields[0], str) and not fields[0].strip())


def _select(found: Sequence[str], columns: Sequence[str], optional: Sequence[str], path: Path,
            where: str) -> list[str]:
    """The kept column names: every one of ``columns`` (an error naming those ``found`` otherwise), then those of
    ``optional`` that are present; a kept name given twice is an error."""
    missing = [c for c in columns if c not in found]
    if missing:
        raise InputFileError(f"{path}: no column(s) {missing}; {where} {list(found)}")
    keep = list(dict.fromkeys([*columns, *(c for c in optional if c in found)]))
    twice = sorted({c for c in keep if list(found).count(c) > 1})
    if twice:
        raise InputFileError(f"{path}: column(s) {twice} appear more than once in {where}")
    return keep


class _Rows:
    """Accumulates rows for a ``TableFile``; a row with a reason keeps '' cells. ``lookup``: the file is a lookup
    table, not the input rows, so a blank line is skipped and any other bad row is an error naming it."""

    def __init__(self, path: Path, keep: list[str], lookup: bool) -> None:
        self.path, self.keep, self.lookup = path, keep, lookup
        self.n = 0  # rows seen, blank ones of a lookup table included
        self.cells: list[list[str]] = []
        self.row: list[int] = []
        self.reason: list[str | None] = []
        self.detail: list[str | None] = []

    def add(self, cells: list[str] | None, reason: Reason | None = None, detail: str | None = None) -> None:
        self.n += 1
        if reason is None and cells is not None and undecoded("".join(cells)):  # one search per row; rare
            bad = next(c for c, v in zip(self.keep, cells) if undecoded(v))
            reason, detail = Reason.NOT_UTF8, f"column {bad!r} is not UTF-8"
        if reason is not None and self.lookup:
            if reason is Reason.BLANK_LINE:
                return
            raise InputFileError(f"{self.path}: row {self.n}: {reason.value} ({detail})")
        self.row.append(self.n)
        self.cells.append([""] * len(self.keep) if reason is not None else cells)
        self.reason.append(reason.value if reason is not None else None)
        self.detail.append(detail)

    def table(self) -> TableFile:
        cells = pd.DataFrame(self.cells, columns=self.keep, dtype=object) if self.cells else \
            pd.DataFrame({c: pd.Series(dtype=object) for c in self.keep})
        return TableFile(self.path, cells, np.array(self.row, dtype=np.int64), self.reason, self.detail)


def read_csv(path: str | Path, columns: Sequence[str], optional: Sequence[str] = (), *, lookup: bool = False,
             sep: str = ",") -> TableFile:
    """The data rows of a delimited text file whose header has ``columns`` (kept, with those of ``optional``
    that are present; other columns are not kept). Leading blank lines before the header are skipped."""
    path = Path(path)
    with open_text(path, newline="") as text:
        records = _records(csv.reader(text, delimiter=sep, strict=True))
        header, line = None, 0
        for line, fields, error in records:
            if error is not None:
                raise InputFileError(f"{path}: the header line is unreadable ({error})")
            if not _is_blank(fields):
                header = fields
                break
        if header is None:
            raise InputFileError(f"{path}: empty file (no header line)")
        if undecoded("".join(header)):
            raise InputFileError(f"{path}: the header (line {line}) is not UTF-8")
        keep = _select(header, columns, optional, path, f"the header (line {line}) has")
        index = [header.index(c) for c in keep]
        rows = _Rows(path, keep, lookup)
        for start, fields, error in records:
            if fields is None:
                rows.add(None, Reason.UNREADABLE_ROW, error)
            elif _is_blank(fields):
                rows.add(None, Reason.BLANK_LINE, f"line {start} is blank")
            elif len(fields) != len(header):
                rows.add(None, Reason.RAGGED_ROW, f"line {start}: {len(fields)} fields, the header has {len(header)}")
            else:
                rows.add([fields[i] for i in index])
    return rows.table()


def cell_text(value: object) -> str | None:
    """A JSON / Parquet value as table text: None / NaN -> '', booleans as JSON spells them, numbers as Python
    prints them, bytes decoded (not UTF-8 kept as surrogate escapes); None for a list or an object."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, (list, tuple, dict)):
        return None
    return str(value)


def _add_object(rows: _Rows, obj: dict) -> None:
    cells = [cell_text(obj.get(c)) for c in rows.keep]
    if None in cells:
        column = rows.keep[cells.index(None)]
        rows.add(None, Reason.UNREADABLE_ROW, f"column {column!r} holds a list or an object, not text")
    else:
        rows.add(cells)


def _from_objects(path: Path, objects: Iterable[tuple[dict | None, Reason | None, str | None]], found: list[str],
                  columns: Sequence[str], optional: Sequence[str], lookup: bool, where: str) -> TableFile:
    keep = _select(found, columns, optional, path, where)
    rows = _Rows(path, keep, lookup)
    for obj, reason, detail in objects:
        if reason is not None:
            rows.add(None, reason, detail)
        else:
            _add_object(rows, obj)
    return rows.table()


def read_jsonl(path: str | Path, columns: Sequence[str], optional: Sequence[str] = (), *,
               lookup: bool = False) -> TableFile:
    """The lines of a JSON Lines file as rows: a blank line is ``blank_line``, a line that is not a JSON object
    ``unreadable_row``; ``columns`` must be keys of at least one object (an error naming the keys found)."""
    path = Path(path)
    objects: list[tuple[dict | None, Reason | None, str | None]] = []
    found: dict[str, None] = {}
    with open_text(path, newline="\n") as text:
        for n, line in enumerate(text, 1):
            if not line.strip():
                objects.append((None, Reason.BLANK_LINE, f"line {n} is blank"))
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                objects.append((None, Reason.UNREADABLE_ROW, f"line {n} is not JSON ({e.msg})"))
                continue
            if not isinstance(obj, dict):
                objects.append((None, Reason.UNREADABLE_ROW, f"line {n} is not a JSON object"))
                continue
            found.update(dict.fromkeys(obj))
            objects.append((obj, None, None))
    if not objects:
        raise InputFileError(f"{path}: empty file (no JSON line)")
    return _from_objects(path, objects, list(found), columns, optional, lookup, "its JSON objects have")


def read_parquet(path: str | Path, columns: Sequence[str]) -> TableFile:
    """The rows of a Parquet file (``columns`` must be in its schema; an error naming the columns found)."""
    path = _existing_file(path)
    try:
        names = pq.read_schema(path).names
        _select(names, columns, (), path, "its schema has")
        table = pq.read_table(path, columns=list(dict.fromkeys(columns)))
    except (pa.ArrowException, OSError) as e:
        raise InputFileError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
    data = {c: table.column(c).to_pylist() for c in columns}
    objects = ((dict(zip(columns, values)), None, None) for values in zip(*data.values()))
    return _from_objects(path, objects, names, columns, (), False, "its schema has")


#: File name endings -> reader of a report or label file.
READERS: dict[str, Callable[..., TableFile]] = {
    ".csv": read_csv, ".csv.gz": read_csv,
    ".tsv": partial(read_csv, sep="\t"), ".tsv.gz": partial(read_csv, sep="\t"),
    ".jsonl": read_jsonl, ".ndjson": read_jsonl, ".parquet": read_parquet,
}


def read_rows(path: str | Path, columns: Sequence[str]) -> TableFile:
    """A report file by its name's ending (``READERS``); an unknown ending is an error listing those known."""
    path = _existing_file(path)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix not in READERS:
        raise InputFileError(f"{path}: expected one of {sorted(READERS)}, got {suffix or 'no suffix'!r}")
    return READERS[suffix](path, columns)


def load_json(path: str | Path) -> object:
    """A JSON document (any BOM encoding); InputFileError naming the file and the line of a syntax error."""
    path = Path(path)
    with open_text(path, newline=None) as text:
        content = text.read()
    if undecoded(content):
        raise InputFileError(f"{path}: not UTF-8")
    try:
        return json.loads(content)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
