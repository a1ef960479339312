"""An NIH ChestX-ray14 image subset with its 14 finding labels as a multi-label ImageSet (kind ``nih_png``).

Layout read: ``<root>/labels.csv`` with columns ``path`` (PNG relative to ``root``), ``finding_labels`` (NIH's
``Finding Labels``: ``A|B`` or ``No Finding``) and ``patient_id``, as in ``../shared/data/nih_cxr14_1000_64px``
(1,000 images at 64 px whose shipped splits share patients). Images are re-split by ``patient_id``
(``fractions`` train / val / test, ``seed``). For the full release with its official split lists, use the
record source ``nih``.
"""

from __future__ import annotations

from vivid_med.sources.base import ImageSet, read_gray
from vivid_med.sources.dataset import ImageSetSource, ResplitImageOptions, register
from vivid_med.sources.nih import NIH_LABELS, nih_label_matrix
from vivid_med.sources.tablefile import read_csv


@register("nih_png")
class NihPngSubset(ImageSetSource):
    """14 NIH labels (multi-label 0/1 float32 [N, 14]), images uint8 [N, size, size]; named after the folder."""

    Options = ResplitImageOptions

    def image_set(self) -> ImageSet:
        root, o = self.root, self.options
        df = read_csv(root / "labels.csv", ("path", "finding_labels", "patient_id"), lookup=True).cells
        splits = o.splits(df["patient_id"])
        return ImageSet(root.name, read_gray(root, df["path"].tolist(), o.size),
                        nih_label_matrix(df["finding_labels"].tolist()), df["patient_id"].to_numpy(), splits,
                        NIH_LABELS, multilabel=True)
