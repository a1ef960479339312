"""Dataset adapters: one module and one registered class per dataset kind (see ``dataset.py``).

    >>> from vivid_med.sources import DATASETS, open_dataset, parse_dataset
    >>> options = parse_dataset({"kind": "nih", "root": "data/demo/nih"}, "records", "records.sources.demo_nih")
    >>> rows = open_dataset(options).records()          # SourceRows, one row per input image

| kind | provides | module |
| --- | --- | --- |
| chexpert, chexpert_plus, mimic, nih, openi | records | chest X-ray label tables and reports |
| lidc, medmnist, nifti_organs, kermany, nih_png | image_set | CT nodules / organs, MedMNIST, real probe sets |

Shared helpers live in ``base.py`` (ImageSet, patient splits, path guards), ``cxr.py`` (SourceRows and the
chest X-ray reading helpers), ``tablefile.py`` (the one reader of CSV / TSV / JSONL / Parquet tables: rows that
cannot shift, every bad row a reject, errors naming the file) and ``ct.py`` (HU windows, crops, OrganAMNIST
classes); adapters import only these.
"""

from vivid_med.sources import (chexpert, chexpert_plus, kermany, lidc, medmnist, mimic,  # noqa: F401 (registers)
                               nifti_organs, nih, nih_png, openi)
from vivid_med.sources.base import ImageSet
from vivid_med.sources.cxr import SourceRows
from vivid_med.sources.dataset import (DATASETS, Dataset, DatasetOptions, ImageSetSource, ImageSetSpec,
                                       RecordOptions, RecordSource, RecordSourceSpec, Role, kinds, open_dataset,
                                       parse_dataset)

__all__ = ["DATASETS", "Dataset", "DatasetOptions", "ImageSet", "ImageSetSource", "ImageSetSpec", "RecordOptions",
           "RecordSource", "RecordSourceSpec", "Role", "SourceRows", "kinds", "open_dataset", "parse_dataset"]
