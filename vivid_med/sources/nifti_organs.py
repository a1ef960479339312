"""Organ slices from NIfTI CT volumes with label maps (the way OrganAMNIST was cut from LiTS; kind ``nifti_organs``).

Layout read: ``<root>/<case>_image.nii.gz`` (Hounsfield units) + ``<root>/<case>_label.nii.gz`` (uint labels,
0 background, ``k`` = class ``k-1`` of ``classes``; default: OrganAMNIST's 11 organs). For every organ of
every case: the axial slice where the organ's area is largest, cropped around the organ, abdomen-windowed
(W400/L40), resized. Images are shown in the radiological convention (patient's right on the image's
left, anterior at the top).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import nibabel as nib
import numpy as np
from pydantic import Field

from vivid_med.params import NonNegativeInt, PositiveInt
from vivid_med.sources.base import ImageSet
from vivid_med.sources.ct import ORGAN_CLASSES, organ_crop, patient_split_map, ras_to_display
from vivid_med.sources.dataset import DatasetOptions, HuWindow, ImageSetSource, SplitFractions, register


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


@register("nifti_organs")
class NiftiOrgans(ImageSetSource):
    """One crop per (case, organ present): ImageSet uint8 [N, size, size], labels = class index,
    patient = case, split by case with ``fractions`` and ``seed``."""

    class Options(DatasetOptions):
        classes: Annotated[list[str], Field(min_length=1)] = list(ORGAN_CLASSES)
        size: PositiveInt = 64
        window: HuWindow = [400.0, 40.0]
        margin: Annotated[float, Field(ge=0.0)] = 0.15
        fractions: SplitFractions = [0.7, 0.2, 0.1]
        seed: NonNegativeInt = 0

    def image_set(self) -> ImageSet:
        o = self.options
        images, labels, cases = [], [], []
        for case, image_path, label_path in find_cases(self.root):
            img, lab = load_case(image_path, label_path, len(o.classes))
            for v in np.unique(lab):
                if v == 0:
                    continue
                area = (lab == v).sum((0, 1))
                k = int(np.argmax(area))
                hu = np.asarray(img.dataobj[:, :, k], np.float32)
                images.append(organ_crop(ras_to_display(hu), ras_to_display(lab[:, :, k] == v), o.size,
                                         tuple(o.window), o.margin))
                labels.append(int(v) - 1)
                cases.append(case)
        if not images:
            raise ValueError(f"{self.root}: no organ label found in any case")
        split = patient_split_map(cases, o.fractions, o.seed)
        return ImageSet("nifti_organs", np.stack(images), np.array(labels, np.int64), np.array(cases),
                        np.array([split[c] for c in cases]), tuple(o.classes))
