"""What the chest X-ray adapters (CheXpert, MIMIC-CXR, NIH, IU X-ray) hand to the records builder.

An adapter reads one dataset's real layout and returns ``SourceRows``: one row per input image, in input
order, with where it came from (``source_file``, 1-based data ``row``), ids, view, split, the report text
where there is one, and any reason found while reading (unknown label value, unknown split, ...).
Label-table states travel as int8 codes (``STATE_CODES``), so the records stage can work on them in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vivid_med.fields import FIELDS
from vivid_med.tables import Reason

#: State codes of a label matrix: 0 null, 1 present, 2 absent, 3 uncertain.
STATE_OF_CODE: tuple[str | None, ...] = (None, "present", "absent", "uncertain")
#: ``STATE_NAMES[codes]`` turns a code array into states (object array, None for null).
STATE_NAMES = np.array(STATE_OF_CODE, dtype=object)
#: CheXpert label-table cell text -> state code (1 present, 0 absent, -1 uncertain, blank null).
CHEXPERT_CELL_CODES: dict[str, int] = {"1": 1, "1.0": 1, "0": 2, "0.0": 2, "-1": 3, "-1.0": 3, "": 0}

ROW_COLUMNS = ("source_file", "row", "study_id", "patient_id", "image_id", "image_path", "view", "split",
               "report", "report_issue", "reason", "detail")

_VIEWS = {"PA": "PA", "AP": "AP", "LATERAL": "LAT", "LAT": "LAT", "LL": "LAT", "RL": "LAT", "AP AXIAL": "AP",
          "PA LLD": "PA", "AP LLD": "AP", "AP RLD": "AP", "PA RLD": "PA"}
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validate": "val", "validation": "val", "test": "test"}


@dataclass
class SourceRows:
    """One dataset's input images.

    frame: DataFrame with ``ROW_COLUMNS`` (``reason``/``detail`` None where the row is fine so far;
    ``report_issue`` a Reason value when the report could not be read). labels: int8 [N, 14] state codes
    in ``FIELDS`` order, or None when the source has no label table. label_file: the table they came from
    when it is not the row's ``source_file``.
    """

    kind: str
    root: Path
    frame: pd.DataFrame
    labels: np.ndarray | None = None
    label_file: str | None = None

    def __post_init__(self) -> None:
        missing = [c for c in ROW_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"{self.kind}: adapter frame lacks column(s) {missing}")
        if self.labels is not None and self.labels.shape != (len(self.frame), len(FIELDS)):
            raise ValueError(f"{self.kind}: labels shape {self.labels.shape} != ({len(self.frame)}, {len(FIELDS)})")


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV (optionally .gz) with every cell as a string and blanks kept as ''."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def find_file(root: Path, names: tuple[str, ...]) -> Path:
    """The first of ``names`` (also tried with .gz) that exists under ``root``; FileNotFoundError otherwise."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{root}: none of {list(names)} (or .gz) found")


def label_codes(table: pd.DataFrame, columns: dict[str, str], what: str) -> tuple[np.ndarray, list[str | None]]:
    """State codes [N, 14] from a CheXpert-style table; ``columns`` maps field key -> column name.

    Returns the codes (0 where a field has no column) and, per row, None or a detail naming the unknown value.
    """
    missing = [c for c in columns.values() if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing label column(s) {missing}")
    codes = np.zeros((len(table), len(FIELDS)), dtype=np.int8)
    bad = np.zeros(len(table), dtype=bool)
    first_bad: list[str | None] = [None] * len(table)
    for j, field in enumerate(FIELDS):
        if field not in columns:
            continue
        idx, values = pd.factorize(table[columns[field]])
        lookup = np.array([CHEXPERT_CELL_CODES.get(str(v).strip(), -1) for v in values] + [-1], dtype=np.int8)
        mapped = lookup[idx]  # idx -1 (missing cell) -> the trailing -1
        unknown = mapped < 0
        for i in np.flatnonzero(unknown & ~bad):
            first_bad[i] = f"{columns[field]}={table[columns[field]].iloc[i]!r}"
        bad |= unknown
        codes[:, j] = np.where(unknown, 0, mapped)
    return codes, first_bad


def map_values(values: pd.Series, func) -> pd.Series:
    """``values.map(func)`` evaluated once per distinct value (object dtype; NaN cells give ``func(None)``)."""
    idx, uniques = pd.factorize(values)
    out = np.array([func(u) for u in uniques] + [func(None)], dtype=object)
    return pd.Series(out[idx], index=values.index, dtype=object)


def normalise_view(values: pd.Series) -> pd.Series:
    """Dataset view strings -> PA / AP / LAT / None."""
    return map_values(values, lambda v: _VIEWS.get(str(v or "").strip().upper()))


def normalise_split(values: pd.Series) -> pd.Series:
    """Dataset split names -> train / val / test (None where unknown)."""
    return map_values(values, lambda v: _SPLITS.get(str(v or "").strip().lower()))


def read_report(path: Path) -> tuple[str | None, str | None]:
    """(text, None), or (None, reason value) when the file is missing or its bytes are not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8"), None
    except FileNotFoundError:
        return None, Reason.MISSING_REPORT.value
    except UnicodeDecodeError:
        return None, Reason.NOT_UTF8.value


def frame(**columns) -> pd.DataFrame:
    """A SourceRows frame from column arrays; ``report``/``report_issue``/``reason``/``detail`` default to None."""
    n = len(next(iter(columns.values())))
    for name in ("report", "report_issue", "reason", "detail", "view"):
        columns.setdefault(name, [None] * n)
    df = pd.DataFrame({c: columns[c] for c in ROW_COLUMNS})
    for c in ROW_COLUMNS:
        if c != "row":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    df["row"] = df["row"].astype(np.int64)
    return df


def reject_where(df: pd.DataFrame, mask: np.ndarray, reason: Reason, details) -> None:
    """Set ``reason``/``detail`` on rows in ``mask`` that have no reason yet (first reason wins)."""
    free = np.asarray(mask, dtype=bool) & df["reason"].isna().to_numpy()
    if not free.any():
        return
    details = pd.Series(details, index=df.index) if not isinstance(details, str) else details
    df.loc[free, "reason"] = reason.value
    df.loc[free, "detail"] = details if isinstance(details, str) else details[free]
