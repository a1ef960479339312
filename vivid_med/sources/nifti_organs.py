"""Organ slices from NIfTI CT volumes with label maps (the way OrganAMNIST was cut from LiTS).

Layout read: ``<root>/<case>_image.nii.gz`` (Hounsfield units) + ``<root>/<case>_label.nii.gz`` (uint labels,
0 background, ``k`` = class ``k-1`` of ``classes``; default: OrganAMNIST's 11 organs). For every organ of
every case: the axial slice where the organ's area is largest, cropped around the organ, abdomen-windowed
(W400/L40), resized. Images are shown in the radiological convention (patient's right on the image's
left, anterior at the top).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from vivid_med.sources.base import ImageSet
from vivid_med.sources.lidc import crop_resize, split_patients, window_hu

#: OrganAMNIST's classes in MedMNIST's label order (medmnist INFO["organamnist"]["label"]).
ORGAN_CLASSES: tuple[str, ...] = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)


def ras_to_display(a: np.ndarray) -> np.ndarray:
    """An axial slice of a RAS+ volume [X, Y] -> the radiological view [rows=A->P, cols=R->L].

    The same operation maps a display slice back to RAS (it is its own inverse up to the transpose).
    """
    return np.ascontiguousarray(a[::-1, ::-1].T)


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


def find_cases(root: Path) -> list[tuple[str, Path, Path]]:
    """(case, image path, label path) per ``*_image.nii.gz``; FileNotFoundError naming a missing label map."""
    out = []
    for img in sorted(root.glob("*_image.nii*")):
        case = img.name.split("_image.nii")[0]
        lab = img.with_name(img.name.replace("_image.nii", "_label.nii"))
        if not lab.exists():
            raise FileNotFoundError(f"{img}: no label map {lab.name} next to it")
        out.append((case, img, lab))
    if not out:
        raise FileNotFoundError(f"{root}: no <case>_image.nii.gz files")
    return out


def load_case(image_path: Path, label_path: Path, n_classes: int) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Both files in RAS+; ValueError naming them if shape or affine differ or labels are out of range.

    Returns (the canonical image, label map uint8 [X, Y, Z])."""
    img = nib.as_closest_canonical(nib.load(image_path))
    lab = nib.as_closest_canonical(nib.load(label_path))
    if img.shape[:3] != lab.shape[:3]:
        raise ValueError(f"{image_path} shape {img.shape} != {label_path} shape {lab.shape}")
    if not np.allclose(img.affine, lab.affine, atol=1e-3):
        raise ValueError(f"{image_path} and {label_path}: affines differ\n{img.affine}\n{lab.affine}")
    labels = np.asanyarray(lab.dataobj)
    if labels.ndim != 3:
        raise ValueError(f"{label_path}: expected a 3-D label map, got shape {labels.shape}")
    bad = np.setdiff1d(np.unique(labels), np.arange(n_classes + 1))
    if len(bad):
        raise ValueError(f"{label_path}: label value(s) {bad[:5].tolist()} outside 0..{n_classes}")
    return img, labels.astype(np.uint8)


def load_nifti_organs(root: str | Path, classes: tuple[str, ...] = ORGAN_CLASSES, size: int = 64,
                      window: tuple[float, float] = (400.0, 40.0), margin: float = 0.15,
                      fractions: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0) -> ImageSet:
    """One crop per (case, organ present): ImageSet uint8 [N, size, size], labels = class index,
    patient = case, split by case."""
    root = Path(root)
    images, labels, cases = [], [], []
    for case, image_path, label_path in find_cases(root):
        img, lab = load_case(image_path, label_path, len(classes))
        for v in np.unique(lab):
            if v == 0:
                continue
            area = (lab == v).sum((0, 1))
            k = int(np.argmax(area))
            hu = np.asarray(img.dataobj[:, :, k], np.float32)
            images.append(organ_crop(ras_to_display(hu), ras_to_display(lab[:, :, k] == v), size, window, margin))
            labels.append(int(v) - 1)
            cases.append(case)
    if not images:
        raise ValueError(f"{root}: no organ label found in any case")
    split = split_patients(cases, fractions, seed)
    pids = np.array(cases)
    return ImageSet("nifti_organs", np.stack(images), np.array(labels, np.int64), pids,
                    np.array([split[c] for c in cases]), tuple(classes))
