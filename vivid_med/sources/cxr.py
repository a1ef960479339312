"""What the chest X-ray adapters (CheXpert, CheXpert Plus, MIMIC-CXR, NIH, IU X-ray) hand to the records builder,
and the reading helpers they share.

An adapter reads one dataset's real layout and returns ``SourceRows``: one row per input row (an image), in
input order, with where it came from (``source_file``, ``row`` as ``tables.REJECTS_SCHEMA`` defines it), ids,
view, split, the report text where there is one, and any reason found while reading (blank or ragged row,
unknown label value, unknown split, ...). Tables are read with ``tablefile`` (text cells that cannot shift).
Label-table states travel as int8 state codes (``vivid_med.states``: present 0, absent 1, uncertain 2,
null ``NULL_CODE``), so the records stage can work on them in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vivid_med.fields import FIELDS
from vivid_med.sources.base import file_inside, split_by_patient
from vivid_med.sources.tablefile import TableFile, is_missing_id
from vivid_med.states import CODE_OF_CHEXPERT_CELL, NULL_CODE
from vivid_med.tables import Reason

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


def find_file(root: Path, names: tuple[str, ...]) -> Path:
    """The first of ``names`` (also tried with .gz) that exists under ``root``; FileNotFoundError otherwise."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{root}: none of {list(names)} (or .gz) found")


def label_codes(table: pd.DataFrame, columns: dict[str, str], what: str) -> tuple[np.ndarray, list[str | None]]:
    """State codes [N, 14] from a CheXpert-style table; ``columns`` maps field key -> column name.

    Returns the codes (``NULL_CODE`` where a field has no column) and, per row, None or a detail naming the
    unknown value.
    """
    missing = [c for c in columns.values() if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing label column(s) {missing}")
    codes = np.full((len(table), len(FIELDS)), NULL_CODE, dtype=np.int8)
    bad = np.zeros(len(table), dtype=bool)
    first_bad: list[str | None] = [None] * len(table)
    for j, field in enumerate(FIELDS):
        if field not in columns:
            continue
        idx, values = pd.factorize(table[columns[field]])
        lookup = np.array([CODE_OF_CHEXPERT_CELL.get(str(v).strip(), -1) for v in values] + [-1], dtype=np.int8)
        mapped = lookup[idx]  # idx -1 (missing cell) -> the trailing -1
        unknown = mapped < 0
        for i in np.flatnonzero(unknown & ~bad):
            first_bad[i] = f"{columns[field]}={table[columns[field]].iloc[i]!r}"
        bad |= unknown
        codes[:, j] = np.where(unknown, NULL_CODE, mapped)
    return codes, first_bad


def join_labels(label_keys: pd.Series, codes: np.ndarray, bad: list[str | None], keys: pd.Series, label_file: str,
                unit: str) -> tuple[np.ndarray, pd.Series, pd.Series]:
    """Label rows keyed by ``label_keys`` (codes int8 [M, 14], per row None or a bad-value detail) joined to
    ``keys`` [N]: codes [N, 14] (a key's first label row; ``NULL_CODE`` where none), and per key a reason /
    detail (Series on ``keys``' index): an unknown value, label rows of one ``unit`` that disagree, or no row."""
    table = pd.DataFrame({"key": label_keys.to_numpy(), "_row": np.arange(1, len(label_keys) + 1), "_bad": bad,
                          "_key": [c.tobytes() for c in codes]})
    per_key = table.groupby("key", sort=False)
    first = per_key["_row"].first()
    conflict = per_key["_key"].nunique() > 1
    bad_detail = per_key["_bad"].agg(lambda s: next((b for b in s if b is not None), None))
    idx = keys.map(first)
    found = idx.notna().to_numpy()
    out = np.full((len(keys), len(FIELDS)), NULL_CODE, dtype=np.int8)
    out[found] = codes[idx[found].to_numpy(dtype=np.int64) - 1]
    reason = pd.Series(None, index=keys.index, dtype=object)
    detail = pd.Series(None, index=keys.index, dtype=object)
    unknown = keys.map(bad_detail).notna()
    reason[unknown] = Reason.UNKNOWN_LABEL.value
    detail[unknown] = label_file + ": " + keys[unknown].map(bad_detail)
    conflicting = keys.map(conflict).fillna(False).astype(bool) & reason.isna()
    reason[conflicting] = Reason.CONFLICTING_LABELS.value
    detail[conflicting] = f"{label_file}: {unit} has rows with different labels"
    missing = ~pd.Series(found, index=keys.index) & reason.isna()
    reason[missing] = Reason.MISSING_LABELS.value
    detail[missing] = f"{unit} not in {label_file}"
    return out, reason, detail


def reject_by_reason(df: pd.DataFrame, reason: pd.Series, detail: pd.Series) -> None:
    """``reject_where`` for every distinct reason in ``reason`` (a Series on ``df``'s index; None = no reason)."""
    for code in reason.dropna().unique():
        reject_where(df, (reason == code).to_numpy(), Reason(code), detail)


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


def read_report(root: Path, relative: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, reason value) when the report is missing, not a file, outside ``root`` (a symlink
    out is not followed) or not UTF-8."""
    path, problem = file_inside(root, relative, Reason.MISSING_REPORT)
    if problem is not None:
        return None, problem.value
    try:
        return path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError:
        return None, Reason.NOT_UTF8.value


def table_frame(table: TableFile, **columns) -> pd.DataFrame:
    """``frame`` of one row per row of ``table`` (its file name, row numbers and reasons) plus ``columns``."""
    return frame(source_file=[table.name] * len(table), row=table.row, reason=table.reason, detail=table.detail,
                 **columns)


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


def patient_study_of_path(rel: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(patient, study) from CheXpert-style paths ``train/patient00001/study1/view1_frontal.jpg``:
    ``patient00001`` and ``patient00001/study1`` ('' where the path has fewer parts)."""
    parts = rel.str.extract(r"(?:^|/)(?P<patient>[^/]+)/(?P<study>[^/]+)/[^/]+$").fillna("")
    patient = parts["patient"]
    return patient, (patient + "/" + parts["study"]).where(patient != "", "")


def frontal_lateral_view(frontal_lateral: pd.Series, ap_pa: pd.Series) -> pd.Series:
    """CheXpert's ``Frontal/Lateral`` + ``AP/PA`` cells -> PA / AP / LAT / None."""
    return normalise_view(ap_pa.where(frontal_lateral.str.strip() != "Lateral", "LATERAL"))


def valid_as_test(rows: pd.DataFrame, val_fraction: float, seed: int) -> None:
    """For a CheXpert release without test labels (in place): the radiologist-labelled ``val`` rows become the
    test split and ``val_fraction`` of the train patients (seeded) the validation split."""
    train = (rows["split"] == "train") & ~rows["patient_id"].map(is_missing_id)
    rows.loc[rows["split"] == "val", "split"] = "test"
    rows.loc[train, "split"] = split_by_patient(rows.loc[train, "patient_id"], {"val": val_fraction, "train": 1.0},
                                                seed)


def sectioned_report(sections: dict[str, str]) -> str:
    """``{"FINDINGS": a, "IMPRESSION": b}`` -> ``"FINDINGS: a\\n\\nIMPRESSION: b"`` (headers the extractor reads)."""
    return "\n\n".join(f"{name}: {text}" for name, text in sections.items())
