"""MIMIC-CXR-JPG (Johnson et al. 2019), files as PhysioNet ships them.

- ``mimic-cxr-2.0.0-metadata.csv``: ``dicom_id, subject_id, study_id, ..., ViewPosition, ...`` (one row per image;
  these rows are the input rows).
- ``mimic-cxr-2.0.0-split.csv``: ``dicom_id, study_id, subject_id, split`` (train / validate / test).
- ``mimic-cxr-2.0.0-chexpert.csv``: ``subject_id, study_id`` + the 14 observations (1.0 / 0.0 / -1.0 / blank).
- images ``files/p10/p10000032/s50414267/<dicom_id>.jpg``; reports (from MIMIC-CXR)
  ``files/p10/p10000032/s50414267.txt``, under the same root or ``reports_root``.

``labels: reports`` (default) reads the states from each study's report; ``labels: table`` from the chexpert table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from vivid_med.fields import DISPLAY_NAMES
from vivid_med.sources.cxr import (SourceRows, find_file, join_labels, label_codes, normalise_split, normalise_view,
                                   read_report, reject_by_reason, reject_where, table_frame)
from vivid_med.sources.dataset import RecordOptions, RecordSource, register
from vivid_med.sources.tablefile import read_csv
from vivid_med.tables import Reason

METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"


def _study_dir(subject: pd.Series, study: pd.Series) -> pd.Series:
    return "files/p" + subject.str[:2] + "/p" + subject + "/s" + study


def _splits(root: Path, dicom_ids: pd.Series) -> pd.Series:
    """train / val / test per image from the split table (None where the image has no row)."""
    table = read_csv(find_file(root, (SPLIT,)), ("dicom_id", "split"), lookup=True).cells
    return normalise_split(dicom_ids.map(table.drop_duplicates("dicom_id").set_index("dicom_id")["split"]))


def _study_labels(root: Path, studies: pd.Series) -> tuple[np.ndarray, pd.Series, pd.Series]:
    """Codes per image from the chexpert table, and per image a reason / detail (unknown value, conflict, missing)."""
    path = find_file(root, (CHEXPERT,))
    table = read_csv(path, ("study_id", *DISPLAY_NAMES.values()), lookup=True)
    codes, bad = label_codes(table.cells, DISPLAY_NAMES, str(path))
    return join_labels(table["study_id"], codes, bad, studies, CHEXPERT, "study")


@register("mimic")
class MimicCxrJpg(RecordSource):
    """One row per image of the metadata table; reports from ``reports_root`` (default: ``root``); with
    ``labels: table`` the chexpert table's codes (a study without a row, or with conflicting rows, is rejected)."""

    class Options(RecordOptions):
        labels: Literal["reports", "table"] = "reports"
        reports_root: str | None = None

    def records(self) -> SourceRows:
        root = self.root
        reports_root = Path(self.options.reports_root) if self.options.reports_root else root
        meta = read_csv(find_file(root, (METADATA,)), ("dicom_id", "subject_id", "study_id", "ViewPosition"))
        split = _splits(root, meta["dicom_id"])
        subject, study = meta["subject_id"].str.strip(), meta["study_id"].str.strip()
        numeric = (subject.str.fullmatch(r"\d+") & study.str.fullmatch(r"\d+")).fillna(False).to_numpy(bool)
        study_dir = _study_dir(subject, study)
        # ids build the report path: only all-digit ids (MIMIC's) are read, and the file must stay inside the root
        reports = {s: (read_report(reports_root, f"{s}.txt") if ok else (None, Reason.MISSING_ID.value))
                   for s, ok in zip(study_dir, numeric)}
        df = table_frame(meta, study_id=study, patient_id=subject, image_id=meta["dicom_id"].str.strip(),
                         image_path=study_dir + "/" + meta["dicom_id"] + ".jpg",
                         view=normalise_view(meta["ViewPosition"]), split=split,
                         report=study_dir.map(lambda s: reports[s][0]),
                         report_issue=study_dir.map(lambda s: reports[s][1]))
        reject_where(df, ~numeric, Reason.MISSING_ID, "subject_id and study_id must be digits")
        reject_where(df, df["split"].isna().to_numpy(), Reason.UNKNOWN_SPLIT, f"not a known split in {SPLIT}")
        if self.options.labels == "reports":
            return SourceRows(self.kind, root, df)
        codes, reason, detail = _study_labels(root, df["study_id"])
        reject_by_reason(df, reason, detail)
        return SourceRows(self.kind, root, df, codes, label_file=CHEXPERT)
