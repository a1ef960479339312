"""CheXpert / CheXpert-v1.0-small: ``train.csv`` (train), ``valid.csv`` (val), the official test labels (test).

Columns (Irvin et al. 2019): ``Path, Sex, Age, Frontal/Lateral, AP/PA`` and the 14 observations by display
name, cells 1.0 / 0.0 / -1.0 / blank. ``Path`` looks like
``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``; the leading dataset folder is dropped,
so ``image_path`` is relative to the folder that holds ``train.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from vivid_med.fields import DISPLAY_NAMES
from vivid_med.params import NonNegativeInt, Probability
from vivid_med.sources.cxr import (SourceRows, frontal_lateral_view, label_codes, patient_study_of_path,
                                   reject_where, table_frame, valid_as_test)
from vivid_med.sources.dataset import RecordOptions, RecordSource, register
from vivid_med.sources.tablefile import read_csv
from vivid_med.tables import Reason

#: Label files and their split; the official test labels are ``test_labels.csv`` (or ``test.csv``).
CHEXPERT_FILES: tuple[tuple[str, str], ...] = (
    ("train.csv", "train"), ("valid.csv", "val"), ("test_labels.csv", "test"), ("test.csv", "test"),
)
#: The view columns (optional: a release without them gets no views).
VIEW_COLUMNS = ("Frontal/Lateral", "AP/PA")


def _one_file(root: Path, name: str, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    table = read_csv(root / name, ("Path", *DISPLAY_NAMES.values()), VIEW_COLUMNS)
    codes, bad = label_codes(table.cells, DISPLAY_NAMES, str(root / name))
    rel = table["Path"].str.strip().str.replace(r"^CheXpert-v1\.0[^/]*/", "", regex=True)
    patient, study = patient_study_of_path(rel)
    blank = pd.Series("", index=table.cells.index)
    view = frontal_lateral_view(*(table.cells.get(c, blank) for c in VIEW_COLUMNS))
    df = table_frame(table, study_id=study, patient_id=patient,
                     image_id=rel.str.replace(r"\.[A-Za-z]+$", "", regex=True), image_path=rel, view=view,
                     split=[split] * len(table))
    reject_where(df, np.array([b is not None for b in bad]), Reason.UNKNOWN_LABEL, bad)
    return df, codes


@register("chexpert")
class CheXpert(RecordSource):
    """All label files present under ``root`` (``train.csv`` required), in the order of ``CHEXPERT_FILES``.

    Without official test labels (CheXpert-v1.0-small ships only train.csv and valid.csv), ``valid.csv``
    becomes the test split and ``val_fraction`` of the train patients (seeded) the validation split, so that
    probes select on val and report on the official radiologist-labelled set.
    """

    class Options(RecordOptions):
        labels: Literal["table"] = "table"
        val_fraction: Probability = 0.05
        seed: NonNegativeInt = 0

    def records(self) -> SourceRows:
        root = self.root
        if not (root / "train.csv").is_file():
            raise FileNotFoundError(f"{root}: no train.csv (expected the CheXpert-v1.0(-small) folder)")
        seen_test = False
        frames, codes = [], []
        for name, split in CHEXPERT_FILES:
            if not (root / name).exists() or (split == "test" and seen_test):
                continue
            seen_test |= split == "test"
            df, c = _one_file(root, name, split)
            frames.append(df)
            codes.append(c)
        rows = pd.concat(frames, ignore_index=True)
        if not seen_test:
            valid_as_test(rows, self.options.val_fraction, self.options.seed)
        return SourceRows(self.kind, root, rows, np.concatenate(codes))
