"""Pediatric chest X-ray pneumonia (Kermany et al., Cell 2018) as an ImageSet (kind ``kermany``).

Layout read: ``<root>/labels.csv`` with columns ``path`` (image file relative to ``root``), ``label``
(``NORMAL`` / ``PNEUMONIA``) and ``patient_key`` (the patient parsed from the file name), as in
``../shared/data/kermany_pneumonia_224``. The release's train/test folders share patient keys, so the images
are re-split by ``patient_key`` (``fractions`` train / val / test, ``seed``).
"""

from __future__ import annotations

import numpy as np

from vivid_med.sources.base import ImageSet, read_gray
from vivid_med.sources.dataset import ImageSetSource, ResplitImageOptions, register
from vivid_med.sources.tablefile import read_csv

#: The label values of labels.csv, in class-index order.
KERMANY_LABELS: tuple[str, str] = ("NORMAL", "PNEUMONIA")


@register("kermany")
class KermanyPneumonia(ImageSetSource):
    """Normal (0) vs pneumonia (1): uint8 [N, size, size], patient = ``patient_key``; named after the folder."""

    Options = ResplitImageOptions

    def image_set(self) -> ImageSet:
        root, o = self.root, self.options
        df = read_csv(root / "labels.csv", ("path", "label", "patient_key"), lookup=True).cells
        bad = sorted(set(df["label"]) - set(KERMANY_LABELS))
        if bad:
            raise ValueError(f"{root / 'labels.csv'}: unknown label(s) {bad}")
        splits = o.splits(df["patient_key"])
        labels = df["label"].map({c: i for i, c in enumerate(KERMANY_LABELS)}).to_numpy(np.int64)
        return ImageSet(root.name, read_gray(root, df["path"].tolist(), o.size), labels,
                        df["patient_key"].to_numpy(), splits, ("normal", "pneumonia"))
