"""CT helpers shared by the CT adapters (LIDC-IDRI, NIfTI organs, MedMNIST) and the demo's CT writer:
Hounsfield-unit windowing, square crops, the radiological display orientation, the patient-list split and
OrganAMNIST's class table. No adapter imports another adapter's helpers; they all import these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from vivid_med.sources.base import SPLITS, split_by_patient

#: OrganAMNIST's classes in MedMNIST's label order (medmnist INFO["organamnist"]["label"]).
ORGAN_CLASSES: tuple[str, ...] = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)


def window_hu(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Hounsfield units -> uint8 through a display window (e.g. lung W1500/L-600, abdomen W400/L40)."""
    lo = level - width / 2
    return np.clip(np.rint((hu - lo) / width * 255.0), 0, 255).astype(np.uint8)


def crop_resize(img: np.ndarray, centre_rc: tuple[float, float], half: float, size: int,
                fill: float) -> np.ndarray:
    """Square crop [2*half] around (row, col), padded with ``fill`` outside ``img``, bilinear-resized.

    img: float [H, W] -> float32 [size, size].
    """
    h = max(1, int(np.ceil(half)))
    r0, c0 = int(round(centre_rc[0])) - h, int(round(centre_rc[1])) - h
    out = np.full((2 * h, 2 * h), fill, np.float32)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + 2 * h, img.shape[0]), min(c0 + 2 * h, img.shape[1])
    if re > rs and ce > cs:
        out[rs - r0:re - r0, cs - c0:ce - c0] = img[rs:re, cs:ce]
    return np.asarray(Image.fromarray(out, mode="F").resize((size, size), Image.BILINEAR), np.float32)


def organ_crop(hu: np.ndarray, mask: np.ndarray, size: int, window: tuple[float, float] = (400.0, 40.0),
               margin: float = 0.15) -> np.ndarray:
    """Square crop around ``mask``'s bounding box (+ ``margin`` per side), windowed and resized.

    hu: float [H, W]; mask: bool [H, W] (non-empty) -> uint8 [size, size].
    """
    rows, cols = np.nonzero(mask)
    if not len(rows):
        raise ValueError("organ_crop: empty mask")
    centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    half = (max(np.ptp(rows), np.ptp(cols)) + 1) / 2 * (1 + 2 * margin)
    return window_hu(crop_resize(hu, centre, half, size, -1000.0), *window)


def ras_to_display(a: np.ndarray) -> np.ndarray:
    """An axial slice of a RAS+ volume [X, Y] -> the radiological view [rows=A->P, cols=R->L].

    The same operation maps a display slice back to RAS (it is its own inverse up to the transpose).
    """
    return np.ascontiguousarray(a[::-1, ::-1].T)


def patient_split_map(patients: list[str], fractions: tuple[float, ...] | list[float], seed: int) -> dict[str, str]:
    """{patient: 'train'|'val'|'test'} for the distinct ``patients``, ``fractions`` = (train, val, test) of them
    (``split_by_patient`` on the sorted distinct ids); ValueError unless 3 non-negative numbers summing to 1."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions {tuple(fractions)} must be 3 non-negative numbers summing to 1")
    uniq = pd.Series(sorted(set(patients)))
    return dict(zip(uniq, split_by_patient(uniq, dict(zip(SPLITS, fractions)), seed)))
