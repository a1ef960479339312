"""MedMNIST 2D ``.npz`` files (Yang et al., Sci Data 2023) as an ImageSet (kind ``medmnist``; ``root`` is the file).

A file holds ``{train,val,test}_images`` (uint8 [N, H, W] or RGB [N, H, W, 3]) and ``{train,val,test}_labels``
([N, 1] or [N] class index; [N, C] 0/1 for multi-label sets such as ChestMNIST). MedMNIST publishes no patient
ids, so each row is its own "patient" (``<split>:<row>``): the official split is kept as given, and patient-level
leakage between MedMNIST's splits cannot be checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vivid_med.sources.base import SPLITS, ImageSet
from vivid_med.sources.ct import ORGAN_CLASSES
from vivid_med.sources.dataset import DatasetOptions, ImageSetSource, register

#: Class names of MedMNIST's INFO table, for the sets this project uses.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "organamnist": ORGAN_CLASSES,
    "organcmnist": ORGAN_CLASSES,
    "organsmnist": ORGAN_CLASSES,
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal, benign"),
}

#: ITU-R 601 luma weights (what PIL's convert("L") uses).
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, H, W] by ITU-R 601 luma; [N, H, W] passes through."""
    if images.ndim == 3:
        return images
    return np.clip(np.rint(images.astype(np.float32) @ _LUMA), 0, 255).astype(np.uint8)


def dataset_name(path: Path) -> str | None:
    """The known MedMNIST set a file name starts with (longest match), else None."""
    stem = path.name.split(".")[0].lower()
    hits = [k for k in CLASS_NAMES if stem.startswith(k)]
    return max(hits, key=len) if hits else None


@register("medmnist")
class MedMnist(ImageSetSource):
    """One MedMNIST 2D .npz; ``name`` picks the class table (default: from the file name).

    Raises KeyError/ValueError naming the file and the missing key or bad array.
    """

    class Options(DatasetOptions):
        name: str | None = None

    def image_set(self) -> ImageSet:
        path = self.root
        if not path.exists():
            raise FileNotFoundError(f"{path}: MedMNIST file not found")
        name = self.options.name or dataset_name(path)
        images, labels, splits = [], [], []
        with np.load(path) as npz:
            for split in SPLITS:
                for kind in ("images", "labels"):
                    if f"{split}_{kind}" not in npz.files:
                        raise KeyError(f"{path}: missing key {split}_{kind!s} (has {sorted(npz.files)})")
                x, y = npz[f"{split}_images"], npz[f"{split}_labels"]
                if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
                    raise ValueError(f"{path}: {split}_images must be uint8 [N,H,W] or [N,H,W,3], "
                                     f"got {x.dtype} {x.shape}")
                if len(y) != len(x):
                    raise ValueError(f"{path}: {split}_labels has {len(y)} rows, {split}_images has {len(x)}")
                images.append(to_gray(x))
                labels.append(y.reshape(len(y), -1))
                splits.append(np.full(len(x), split))
        y = np.concatenate(labels)
        multilabel = y.shape[1] > 1
        n_classes = y.shape[1] if multilabel else int(y.max()) + 1
        classes = CLASS_NAMES.get(name or "", tuple(f"class_{i}" for i in range(n_classes)))
        if n_classes > len(classes) or (not multilabel and y.min() < 0):
            raise ValueError(f"{path}: labels span {n_classes} classes, the {name} table has {len(classes)}")
        split = np.concatenate(splits)
        row_ids = np.concatenate([np.arange((split == s).sum()) for s in SPLITS])
        return ImageSet(name or path.stem, np.concatenate(images),
                        y.astype(np.float32) if multilabel else y[:, 0].astype(np.int64),
                        np.char.add(np.char.add(split, ":"), row_ids.astype(str)), split, classes, multilabel)
