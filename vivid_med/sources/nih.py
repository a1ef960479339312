"""NIH ChestX-ray14 (Wang et al. 2017), files as the NIH Clinical Center ships them.

- ``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv`` (optionally .gz): ``Image Index, Finding Labels,
  Follow-up #, Patient ID, Patient Age, Patient Gender, View Position, ...``; ``Finding Labels`` is
  pipe-separated (``Cardiomegaly|Effusion``) or ``No Finding``.
- ``train_val_list.txt``, ``test_list.txt``: one image name per line (official split). ``test_list`` -> test;
  train_val is split into train / val by patient (seeded).
- images ``images/<Image Index>`` or ``images_001/images/<Image Index>`` (as extracted from the tarballs).

Each image is its own study (NIH has no study ids). States: the NIH findings that map to a UMS field are
present when listed and absent otherwise; fields NIH does not label are null.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from vivid_med.fields import FIELDS
from vivid_med.params import NonNegativeInt, Probability
from vivid_med.sources.base import split_by_patient
from vivid_med.sources.cxr import SourceRows, find_file, normalise_view, reject_where, table_frame
from vivid_med.sources.dataset import RecordOptions, RecordSource, register
from vivid_med.sources.tablefile import InputFileError, is_missing_id, open_text, read_csv, undecoded
from vivid_med.states import NULL_CODE, State
from vivid_med.tables import Reason

#: NIH finding -> UMS field (the 8 labels both share; method.md section 5). ``No Finding`` is its own label.
NIH_TO_FIELD: dict[str, str] = {
    "No Finding": "no_finding", "Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation", "Edema": "edema", "Effusion": "pleural_effusion",
    "Pneumonia": "pneumonia", "Pneumothorax": "pneumothorax",
}
#: The 14 NIH findings (order of the NIH paper): the labels of ``Finding Labels`` besides ``No Finding``.
NIH_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
#: NIH findings with no UMS field of the same meaning (they leave every field's state unchanged).
NIH_UNMAPPED: tuple[str, ...] = tuple(label for label in NIH_LABELS if label not in NIH_TO_FIELD)
DATA_ENTRY = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")


def nih_codes(labels: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """State codes [N, 14] from ``Finding Labels`` and, per row, None or a detail naming a bad label."""
    mapped_cols = [FIELDS.index(f) for f in NIH_TO_FIELD.values()]
    codes = np.full((len(labels), len(FIELDS)), NULL_CODE, dtype=np.int8)
    codes[:, mapped_cols] = State.ABSENT.code  # absent unless listed
    col_of = {name: FIELDS.index(f) for name, f in NIH_TO_FIELD.items()}
    known = set(NIH_TO_FIELD) | set(NIH_UNMAPPED)
    bad: list[str | None] = [None] * len(labels)
    for i, cell in enumerate(labels):
        names = [n.strip() for n in cell.split("|")]
        unknown = [n for n in names if n not in known]
        if unknown:
            bad[i] = f"Finding Labels has unknown label(s) {unknown}"
        elif "No Finding" in names and len(names) > 1:
            bad[i] = "Finding Labels combines 'No Finding' with findings"
        for n in names:
            if n in col_of:
                codes[i, col_of[n]] = State.PRESENT.code
    return codes, bad


def _image_index(root: Path) -> dict[str, str]:
    """PNG file name -> path relative to ``root``, over ``images/`` and ``images_*/images/``."""
    index: dict[str, str] = {}
    for top in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("images")):
        for dirpath, _, names in os.walk(top):
            rel = Path(dirpath).relative_to(root).as_posix()
            for n in names:
                index.setdefault(n, f"{rel}/{n}")
    return index


def _read_list(path: Path) -> set[str]:
    """The image names of an official split list (one a line; blank lines skipped)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (NIH's official split list)")
    with open_text(path, newline=None) as text:
        lines = [line.strip() for line in text]
    bad = next((n for n, line in enumerate(lines, 1) if undecoded(line)), None)
    if bad is not None:
        raise InputFileError(f"{path}: line {bad} is not UTF-8")
    return {line for line in lines if line}


@register("nih")
class NihChestXray14(RecordSource):
    """One row per ``Data_Entry`` row; codes from ``Finding Labels``; official test list, val by patient."""

    class Options(RecordOptions):
        labels: Literal["table"] = "table"
        val_fraction: Probability = 0.1
        seed: NonNegativeInt = 0

    def records(self) -> SourceRows:
        root = self.root
        table = read_csv(find_file(root, DATA_ENTRY), ("Image Index", "Finding Labels", "Patient ID", "View Position"))
        test, train_val = _read_list(root / "test_list.txt"), _read_list(root / "train_val_list.txt")
        name = table["Image Index"].str.strip()
        patient = table["Patient ID"].str.strip()
        in_tv = name.isin(train_val).to_numpy()
        no_patient = patient.map(is_missing_id).to_numpy(bool)
        split = pd.Series(None, index=table.cells.index, dtype=object)
        split[name.isin(test)] = "test"
        drawn = in_tv & ~no_patient
        split[drawn] = split_by_patient(patient[drawn], {"val": self.options.val_fraction, "train": 1.0},
                                        self.options.seed)
        index = _image_index(root)
        codes, bad = nih_codes(table["Finding Labels"])
        df = table_frame(table, study_id=name.str.replace(r"\.png$", "", regex=True), patient_id=patient,
                         image_id=name.str.replace(r"\.png$", "", regex=True),
                         image_path=name.map(lambda n: index.get(n, f"images/{n}")),
                         view=normalise_view(table["View Position"]), split=split)
        reject_where(df, no_patient, Reason.MISSING_ID, "empty Patient ID")
        reject_where(df, np.array([b is not None for b in bad]), Reason.UNKNOWN_LABEL, bad)
        both = name.isin(test).to_numpy() & in_tv
        reject_where(df, both, Reason.UNKNOWN_SPLIT, "image is on both test_list.txt and train_val_list.txt")
        reject_where(df, df["split"].isna().to_numpy(), Reason.UNKNOWN_SPLIT, "image is on no official split list")
        return SourceRows(self.kind, root, df, codes)


def nih_label_matrix(finding_labels: list[str] | np.ndarray, labels: tuple[str, ...] = NIH_LABELS) -> np.ndarray:
    """NIH "Finding Labels" strings ("A|B", "No Finding") -> 0/1 float32 [N, len(labels)].

    Raises ValueError naming the row of an unknown label.
    """
    known = set(NIH_LABELS) | {"No Finding"}
    out = np.zeros((len(finding_labels), len(labels)), np.float32)
    col = {name: j for j, name in enumerate(labels)}
    for i, s in enumerate(finding_labels):
        for name in (n.strip() for n in str(s).split("|")):
            if name not in known:
                raise ValueError(f"NIH labels row {i}: unknown finding {name!r}")
            if name in col:
                out[i, col[name]] = 1.0
    return out
