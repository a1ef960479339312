"""Feature extraction from a real (tiny) timm ViT, the cache, and SPD attention maps."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from vivid_med.evaluate.features import RowView, cache_key, cached_features, extract, input_spec, spd_attention_maps
from vivid_med.student.export import ExportedStudent
from vivid_med.student.spd import SPD


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, in_chans=1, num_classes=0, depth=2).eval()


def test_extract_shapes_resizes_and_batches_consistently(vit):
    imgs = np.random.default_rng(0).integers(0, 255, (10, 48, 48), dtype=np.uint8)  # resized to 32
    assert input_spec(vit) == (32, 1)
    a = extract(vit, imgs, batch_size=3)
    b = extract(vit, imgs, batch_size=10)
    assert a.shape == (10, vit.num_features) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_cache_is_reused_and_invalidated_by_weights_or_images(vit, tmp_path):
    imgs = np.random.default_rng(1).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    path = tmp_path / "run" / "set.npz"
    f1 = cached_features(path, vit, imgs)
    mtime = path.stat().st_mtime_ns
    np.testing.assert_array_equal(cached_features(path, vit, imgs), f1)
    assert path.stat().st_mtime_ns == mtime  # read, not rewritten
    other = imgs.copy()
    other[0, 0, 0] ^= 1
    assert cached_features(path, vit, other).shape == f1.shape and path.stat().st_mtime_ns != mtime
    with torch.no_grad():
        vit.norm.weight.add_(1.0)
    try:
        assert not np.allclose(cached_features(path, vit, imgs), f1)
    finally:
        with torch.no_grad():
            vit.norm.weight.sub_(1.0)


def test_spd_attention_maps_cover_the_patch_grid(vit):
    imgs = np.random.default_rng(2).integers(0, 255, (2, 32, 32), dtype=np.uint8)
    maps = spd_attention_maps(ExportedStudent(vit, SPD(vit.num_features, groups=3, queries=2, heads=4)).eval(), imgs)
    assert maps.shape == (2, 3, 4, 4) and (maps >= 0).all() and maps.sum(axis=(2, 3)).max() <= 1.0 + 1e-5
    assert spd_attention_maps(ExportedStudent(vit, None), imgs) is None


def test_row_view_of_a_memmap_gives_the_features_and_cache_key_of_the_loaded_rows(vit, tmp_path):
    pixels = np.lib.format.open_memmap(tmp_path / "pixels.npy", mode="w+", dtype=np.uint8, shape=(12, 32, 32))
    pixels[:] = np.random.default_rng(1).integers(0, 255, pixels.shape, dtype=np.uint8)
    rows = np.array([7, 2, 9, 0, 11])
    view, loaded = RowView(np.load(tmp_path / "pixels.npy", mmap_mode="r"), rows), np.asarray(pixels[rows])
    assert len(view) == 5 and view.shape == loaded.shape
    np.testing.assert_array_equal(view[np.array([1, 3])], loaded[[1, 3]])
    assert cache_key(vit, view, chunk=2) == cache_key(vit, loaded)
    np.testing.assert_array_equal(extract(vit, view, batch_size=2), extract(vit, loaded, batch_size=2))
