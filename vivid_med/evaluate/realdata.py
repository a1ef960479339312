"""Loaders for the small real public sets in ../shared/data (see its README), re-split by patient.

Both sets ship splits that share patients, so their images are re-split 70/10/20 by patient (seeded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from vivid_med.evaluate.transfer import NIH_LABELS, nih_label_matrix
from vivid_med.sources.base import ImageSet, safe_join
from vivid_med.sources.base import split_patients

PATIENT_SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}


def read_gray(root: Path, paths: list[str], size: int) -> np.ndarray:
    """uint8 [N, size, size] from image files under ``root`` (grey, bilinear resize); names the bad file."""
    out = np.empty((len(paths), size, size), np.uint8)
    for i, rel in enumerate(tqdm(paths, desc=root.name, leave=False)):
        try:
            with Image.open(safe_join(root, rel)) as im:
                out[i] = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR))
        except OSError as e:
            raise ValueError(f"{root / rel}: cannot read image ({e})") from e
    return out


def load_nih_subset(root: str | Path, size: int = 64, seed: int = 0) -> ImageSet:
    """nih_cxr14_1000_64px: 14 NIH labels (multi-label, 0/1) from labels.csv, re-split by patient_id."""
    root = Path(root)
    df = pd.read_csv(root / "labels.csv", dtype={"patient_id": str})
    splits = split_patients(df["patient_id"], PATIENT_SPLIT, seed).to_numpy().astype(str)
    return ImageSet("nih_cxr14_1000_64px", read_gray(root, df["path"].tolist(), size),
                    nih_label_matrix(df["finding_labels"].tolist()), df["patient_id"].to_numpy(), splits,
                    NIH_LABELS, multilabel=True)


def load_kermany(root: str | Path, size: int = 64, seed: int = 0) -> ImageSet:
    """kermany_pneumonia_224: normal vs pneumonia, re-split by patient_key (keys recur across its splits)."""
    root = Path(root)
    df = pd.read_csv(root / "labels.csv")
    classes = ("NORMAL", "PNEUMONIA")
    bad = sorted(set(df["label"]) - set(classes))
    if bad:
        raise ValueError(f"{root / 'labels.csv'}: unknown label(s) {bad}")
    splits = split_patients(df["patient_key"], PATIENT_SPLIT, seed).to_numpy().astype(str)
    labels = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    return ImageSet("kermany_pneumonia_224", read_gray(root, df["path"].tolist(), size), labels,
                    df["patient_key"].to_numpy(), splits, ("normal", "pneumonia"))
