"""The MedMNIST .npz adapter on generated files and on the real files in ../shared/data/medmnist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vivid_med.sources.base import ImageSet
from vivid_med.sources.ct import ORGAN_CLASSES
from vivid_med.sources.medmnist import MedMnist, to_gray

SIZES = {"train": 12, "val": 3, "test": 5}


def load_medmnist(path: Path, **options) -> ImageSet:
    return MedMnist.at(path, **options).image_set()


def _write(path: Path, rgb: bool = False, labels_shape: str = "n1", n_classes: int = 11, drop: str = "",
           **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SIZES.items():
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        y = np.arange(n) % n_classes
        arrays[f"{split}_labels"] = (y[:, None] if labels_shape == "n1" else y).astype(np.uint8)
    arrays.update(override)
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


def test_organamnist_layout(tmp_path):
    s = load_medmnist(_write(tmp_path / "organamnist.npz"))
    assert s.name == "organamnist" and s.class_names == ORGAN_CLASSES
    assert s.images.shape == (20, 28, 28) and s.labels.dtype == np.int64
    assert s.splits.tolist() == ["train"] * 12 + ["val"] * 3 + ["test"] * 5
    assert s.patient_ids[12] == "val:0" and len(set(s.patient_ids)) == 20
    assert s.labels[:12].tolist() == [i % 11 for i in range(12)]


def test_labels_shape_n_and_generic_names(tmp_path):
    s = load_medmnist(_write(tmp_path / "mystery.npz", labels_shape="n", n_classes=3))
    assert s.class_names == ("class_0", "class_1", "class_2") and s.labels.max() == 2


def test_rgb_to_gray_matches_pil(tmp_path):
    s = load_medmnist(_write(tmp_path / "pathmnist.npz", rgb=True))
    assert s.images.shape == (20, 28, 28)
    with np.load(tmp_path / "pathmnist.npz") as npz:
        rgb = npz["train_images"][0]
    pil = np.asarray(Image.fromarray(rgb).convert("L"), np.int16)
    assert np.abs(to_gray(rgb[None])[0].astype(np.int16) - pil).max() <= 1


def test_multilabel(tmp_path):
    y = {f"{s}_labels": (np.arange(n * 14).reshape(n, 14) % 3 == 0).astype(np.uint8) for s, n in SIZES.items()}
    s = load_medmnist(_write(tmp_path / "chestmnist.npz", **y))
    assert s.multilabel and s.labels.shape == (20, 14) and s.labels.dtype == np.float32


def test_missing_key_names_file_and_key(tmp_path):
    path = _write(tmp_path / "breastmnist.npz", drop="val_labels")
    with pytest.raises(KeyError, match="breastmnist.npz: missing key val_labels"):
        load_medmnist(path)


def test_bad_arrays(tmp_path):
    path = _write(tmp_path / "a.npz", test_labels=np.zeros((4, 1), np.uint8))
    with pytest.raises(ValueError, match="a.npz: test_labels has 4 rows, test_images has 5"):
        load_medmnist(path)
    path = _write(tmp_path / "b.npz", train_images=np.zeros((12, 28, 28), np.float32))
    with pytest.raises(ValueError, match="b.npz: train_images must be uint8"):
        load_medmnist(path)
    path = _write(tmp_path / "breastmnist.npz", n_classes=3)
    with pytest.raises(ValueError, match="3 classes, the breastmnist table has 2"):
        load_medmnist(path)
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_medmnist(tmp_path / "nothing.npz")


@pytest.mark.realdata
@pytest.mark.parametrize("name, counts, classes", [
    ("breastmnist", (546, 78, 156), ("malignant", "normal, benign")),
    ("pneumoniamnist_kaggle_variant", (3882, 524, 624), ("normal", "pneumonia")),
    ("pneumoniamnist_balanced_subset", (2428, 270, 468), ("normal", "pneumonia")),
])
def test_real_files(shared_data, name, counts, classes):
    s = load_medmnist(shared_data / "medmnist" / f"{name}.npz")
    assert tuple((s.splits == sp).sum() for sp in ("train", "val", "test")) == counts
    assert s.class_names == classes and s.images.shape[1:] == (28, 28)
    assert set(s.labels.tolist()) == {0, 1} and 40 < s.images.mean() < 220
