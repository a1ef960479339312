"""Image decoding (real DICOM / NIfTI / PNG / JPEG files) and the memory-mapped store."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from nibabel.testing import data_path as NIB_DATA
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from vivid_med.decoding import BlankImage, UnreadableImage, as_float, decode, fit, read_image
from vivid_med.imaging import (
    CORRUPT_IMAGE, DIGEST_KEY, DUPLICATE_IMAGE, INDEX_SCHEMA, MISSING_IMAGE, NOT_A_FILE, PATH_OUTSIDE_ROOT,
    UNREADABLE_IMAGE, ImageStore, build_store, pixels_digest, to_tensor,
)
from vivid_med.tables import table_metadata, write_table

CT_SMALL = get_testdata_file("CT_small.dcm")


def _gradient(h=40, w=40) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w - 2)).astype(np.uint8)


# --- DICOM -------------------------------------------------------------------------------------------------

def test_dicom_modality_lut_and_explicit_window(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    hu = apply_modality_lut(ds.pixel_array, ds)                      # intercept -1024
    got = read_image(CT_SMALL, window=(40, 400))
    assert got.shape == (128, 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.clip((hu + 160) / 400, 0, 1), atol=1e-6)
    ds.RescaleSlope = 2                                              # the slope must be applied too
    ds.save_as(tmp_path / "slope2.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "slope2.dcm", window=(40, 400)),
                               np.clip((2.0 * ds.pixel_array - 1024 + 160) / 400, 0, 1), atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    mono2, mono1 = read_image(CT_SMALL), read_image(tmp_path / "mono1.dcm")
    assert mono2.std() > 0.1
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_real_chest_cr_monochrome1():
    """pydicom-data's RG1_UNCI.dcm: a real 1955x1841 MONOCHROME1 chest CR with a VOI window."""
    path = get_testdata_file("RG1_UNCI.dcm")
    if path is None:
        pytest.skip("pydicom-data (RG1_UNCI.dcm) is not installed")
    img = fit(read_image(path), 64)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    # after inversion the aerated lungs are dark and the mediastinum/spine bright
    lungs = np.concatenate([img[20:40, 12:22], img[20:40, 42:52]])
    assert img[20:40, 29:35].mean() > lungs.mean() + 30


# --- NIfTI -------------------------------------------------------------------------------------------------

def test_nifti_slice_scaling_and_frame(tmp_path):
    vol = np.zeros((20, 24, 5), np.int16)
    vol[2:6, 3:9, 3] = 100                                           # a block only in slice 3
    img = nib.Nifti1Image(vol, np.eye(4))
    img.header.set_slope_inter(2.0, -50.0)                           # stored 100 -> 150
    nib.save(img, tmp_path / "case.nii.gz")
    s3 = read_image(tmp_path / "case.nii.gz", frame=3, window=(100, 200))
    assert s3.shape == (24, 20)                                      # rows = second voxel axis
    assert s3.max() == pytest.approx(0.75) and s3.min() == pytest.approx(0.0)   # (150 - 0) / 200, (-50 - 0) / 200
    assert (s3 > 0.5).sum() == 4 * 6
    with pytest.raises(BlankImage, match="slice 2: constant value -50"):   # stored 0 everywhere -> -50
        read_image(tmp_path / "case.nii.gz", frame=2, window=(100, 200))
    with pytest.raises(UnreadableImage, match="frame 7 out of range"):
        read_image(tmp_path / "case.nii.gz", frame=7)


@pytest.mark.parametrize("name", ["example4d.nii.gz", "anatomical.nii"])
def test_nibabel_test_data(name):
    got = read_image(f"{NIB_DATA}/{name}")
    assert got.ndim == 2 and 0.0 <= got.min() < got.max() <= 1.0
    assert fit(got, 32).shape == (32, 32)


# --- raster ------------------------------------------------------------------------------------------------

def test_png_round_trip_and_padding(tmp_path):
    g = _gradient()
    Image.fromarray(g).save(tmp_path / "g.png")
    assert np.array_equal(fit(read_image(tmp_path / "g.png"), 40), g)
    Image.fromarray(np.dstack([g, g, g, np.full_like(g, 255)])).save(tmp_path / "rgba.png")
    assert np.array_equal(fit(read_image(tmp_path / "rgba.png"), 40), g)
    wide = np.full((20, 40), 200, np.uint8)                          # non-square: zero-padded, centred
    wide[:, 0] = 250
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = fit(read_image(tmp_path / "wide.png"), 20)
    assert out[:5].max() == 0 and out[-5:].max() == 0 and out[6:14, 1:].min() == 200
    Image.fromarray((g.astype(np.uint16) * 257)).save(tmp_path / "g16.png")  # 16-bit: full range
    assert np.abs(fit(read_image(tmp_path / "g16.png"), 40).astype(int) - g).max() <= 1


def test_downsampling_is_area_average():
    img = np.zeros((64, 64), np.float32)
    img[::2] = 1.0                                                   # stripes alias under nearest
    out = fit(img, 16)
    assert abs(int(out.mean()) - 128) <= 1 and out.std() < 1


@pytest.mark.parametrize("shape, size", [((16, 16), 16), ((16, 9), 16), ((5, 16), 16), ((16, 16), 8),
                                         ((16, 12), 24), ((64, 48), 20), ((48, 64), 100), ((97, 61), 13)])
def test_fit_of_8_bit_values_is_the_float_path(shape, size):
    """decode keeps an 8-bit raster in uint8; fit gives exactly the pixels of the float path: padded only when no
    resampling is needed (the float round trip v / 255 -> rint(x * 255) is the identity on all 256 values),
    through PIL's float image of the same values otherwise (shrinking and enlarging)."""
    values = np.resize(np.arange(256, dtype=np.uint8), shape)
    if values.size > 256:                                            # every value, in no particular order
        values = np.random.default_rng(size).permutation(values.ravel()).reshape(shape)
    got = fit(values, size)
    assert got.dtype == np.uint8 and got.shape == (size, size)
    assert np.array_equal(got, fit(as_float(values), size))
    if shape == (16, 16) and size == 16:
        assert np.array_equal(got, values)


def test_decode_keeps_8_bit_rasters_and_read_image_is_float(tmp_path):
    g = _gradient()
    Image.fromarray(np.dstack([g, g, g])).save(tmp_path / "rgb.png")
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert decode(tmp_path / "rgb.png").dtype == np.uint8 and np.array_equal(decode(tmp_path / "rgb.png"), g)
    assert decode(tmp_path / "g16.png").dtype == np.float32
    assert np.array_equal(read_image(tmp_path / "rgb.png"), g.astype(np.float32) / 255.0)


# --- store -------------------------------------------------------------------------------------------------

@pytest.fixture()
def dataset(tmp_path):
    """A dataset root with good files of every kind and one bad file of each rejected kind."""
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    g = _gradient()
    Image.fromarray(g).save(root / "img" / "a.png")
    buf = io.BytesIO()
    Image.fromarray(g).save(buf, format="JPEG", quality=90)
    (root / "img" / "b.jpg").write_bytes(buf.getvalue())
    (root / "img" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "img" / "garbage.png").write_bytes(b"not a png at all" * 10)
    (root / "img" / "notes.txt").write_text("hello")
    (root / "img" / "folder.png").mkdir()
    shutil.copy(CT_SMALL, root / "img" / "ct.dcm")
    vol = np.arange(20 * 24 * 5, dtype=np.float32).reshape(20, 24, 5)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "img" / "vol.nii.gz")
    Image.fromarray(g).save(tmp_path / "outside.png")                # exists, but outside the root
    rows = [
        ("a", "img/a.png", None, None), ("b", "img/b.jpg", None, None), ("ct", "img/ct.dcm", None, None),
        ("vol", "img/vol.nii.gz", 1, None),
        ("trunc", "img/truncated.jpg", None, CORRUPT_IMAGE), ("garbage", "img/garbage.png", None, CORRUPT_IMAGE),
        ("gone", "img/missing.png", None, MISSING_IMAGE), ("empty", "", None, MISSING_IMAGE),
        ("escape", "../outside.png", None, PATH_OUTSIDE_ROOT), ("abs", str(tmp_path / "outside.png"), None,
                                                                 PATH_OUTSIDE_ROOT),
        ("a", "img/b.jpg", None, DUPLICATE_IMAGE), ("txt", "img/notes.txt", None, UNREADABLE_IMAGE),
        ("dir", "img/folder.png", None, NOT_A_FILE), ("frame", "img/vol.nii.gz", 9, UNREADABLE_IMAGE),
    ]
    records = pd.DataFrame(rows, columns=["image_id", "image_path", "frame", "expected"])
    records["frame"] = records["frame"].astype("Int64")
    return root, records


def test_store_round_trip_and_rejects(dataset, tmp_path):
    root, records = dataset
    counts = build_store(records, root, tmp_path / "store", 32)
    expected = records["expected"]
    assert counts["input"] == len(records) == counts["accepted"] + counts["rejected"]
    assert counts["accepted"] == expected.isna().sum() == 4
    assert counts["rejects_by_reason"] == expected.dropna().value_counts().sort_index().to_dict()

    store = ImageStore.open(tmp_path / "store")
    assert isinstance(store.pixels, np.memmap) and store.pixels.dtype == np.uint8
    assert store.pixels.shape == (4, 32, 32) and len(store) == 4
    assert list(store.index["image_id"]) == ["a", "b", "ct", "vol"]
    rows = store.rows(["vol", "a"])
    assert rows.dtype == np.int64 and list(rows) == [3, 0]
    assert np.array_equal(store.pixels[store.rows(["a"])[0]], fit(read_image(root / "img/a.png"), 32))
    assert np.array_equal(store.pixels[3], fit(read_image(root / "img/vol.nii.gz", frame=1), 32))
    with pytest.raises(KeyError, match="trunc"):
        store.rows(["a", "trunc"])

    rejects = store.rejects.set_index("image_id")
    bad = records[expected.notna()]
    assert len(store.rejects) == len(bad)
    for iid, reason in zip(bad["image_id"], bad["expected"]):
        assert reason in set(rejects.loc[[iid], "reason"]), iid
    assert "Error" in rejects.loc["trunc", "detail"]


def test_store_is_deterministic_with_a_process_pool(dataset, tmp_path):
    root, records = dataset
    c1 = build_store(records, root, tmp_path / "s1", 16, workers=1)
    c2 = build_store(records, root, tmp_path / "s2", 16, workers=2)
    assert c1 == c2
    assert (tmp_path / "s1/pixels.npy").read_bytes() == (tmp_path / "s2/pixels.npy").read_bytes()
    assert not (tmp_path / "s1/pixels.tmp.npy").exists()


def test_store_digest_is_the_sha256_of_the_pixels(dataset, tmp_path):
    """build_store records sha256 of the pixel bytes in index.parquet (ImageStore.digest): the same with a pool;
    a store written before it recorded one gets it computed from its pixels."""
    root, records = dataset
    build_store(records, root, tmp_path / "s1", 16, workers=1)
    build_store(records, root, tmp_path / "s2", 16, workers=2)
    store = ImageStore.open(tmp_path / "s1")
    expected = hashlib.sha256(np.ascontiguousarray(store.pixels).tobytes()).hexdigest()
    assert store.recorded_digest == store.digest == expected == pixels_digest(store.pixels, rows_per_block=3)
    assert table_metadata(tmp_path / "s1/index.parquet")[DIGEST_KEY] == expected
    assert ImageStore.open(tmp_path / "s2").digest == expected
    write_table(store.index, tmp_path / "s1/index.parquet", INDEX_SCHEMA, {"size": 16})   # an older store
    old = ImageStore.open(tmp_path / "s1")
    assert old.recorded_digest is None and old.digest == expected and old.recorded_digest == expected
    build_store(records.head(1), root, tmp_path / "s3", 24)
    assert ImageStore.open(tmp_path / "s3").digest != expected


def test_store_with_nothing_accepted(tmp_path):
    counts = build_store(pd.DataFrame({"image_id": ["x"], "image_path": ["nope.png"]}), tmp_path, tmp_path / "s", 8)
    assert counts == {"input": 1, "accepted": 0, "rejected": 1, "rejects_by_reason": {MISSING_IMAGE: 1}}
    store = ImageStore.open(tmp_path / "s")
    assert store.pixels.shape == (0, 8, 8) and store.digest == hashlib.sha256(b"").hexdigest()


def test_images_stage(dataset, tmp_path, monkeypatch):
    from stages import images as stage
    from vivid_med.fields import FIELDS
    from vivid_med.tables import RECORDS_SCHEMA, write_records

    root, records = dataset
    work = tmp_path / "work"
    (work / "data/records").mkdir(parents=True)
    df = pd.DataFrame({n: "x" for n in RECORDS_SCHEMA.names}, index=range(len(records)))
    df[list(FIELDS)] = None
    df["image_id"], df["image_path"] = records["image_id"].to_numpy(), records["image_path"].to_numpy()
    write_records(df, work / "data/records/toy.parquet", ("edema",))
    (work / "data/records/toy.json").write_text(json.dumps({"root": str(root)}))
    (work / "params.yaml").write_text("images:\n  size: 24\n  window: null\n  max_pixels: 50000000\n")
    monkeypatch.chdir(work)
    stage.main([])
    metrics = json.loads((work / "metrics/images.json").read_text())
    assert metrics["toy"]["input"] == len(records)
    assert ImageStore.open(work / "data/images/toy").pixels.shape[1:] == (24, 24)


# --- tensors -----------------------------------------------------------------------------------------------

def test_to_tensor():
    x = np.array([[[0, 255], [128, 64]]], np.uint8)
    t = to_tensor(x)
    assert t.shape == (1, 1, 2, 2) and t.dtype == torch.float32
    assert t[0, 0, 0, 0] == pytest.approx(-2.0) and t[0, 0, 0, 1] == pytest.approx(2.0)
    assert torch.equal(to_tensor(torch.from_numpy(x)), t)
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(x.astype(np.float32))


# --- real data ---------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_chest_xrays(shared_data, tmp_path):
    """Real NIH ChestX-ray14 PNGs (64 px) are stored unchanged; real case-note JPEGs (mixed sizes) all decode."""
    nih = pd.read_csv(shared_data / "nih_cxr14_1000_64px/labels.csv").head(200)
    recs = pd.DataFrame({"image_id": nih["image_index"], "image_path": nih["path"]})
    counts = build_store(recs, shared_data / "nih_cxr14_1000_64px", tmp_path / "nih", 64)
    assert counts["accepted"] == 200
    store = ImageStore.open(tmp_path / "nih")
    first = np.asarray(Image.open(shared_data / "nih_cxr14_1000_64px" / nih["path"][0]).convert("L"))
    assert np.array_equal(store.pixels[0], first)

    notes = pd.read_csv(shared_data / "covid_cxr_casenotes/subset_with_notes.csv")
    recs = pd.DataFrame({"image_id": notes["image"], "image_path": notes["image"]}).drop_duplicates("image_id")
    counts = build_store(recs, shared_data / "covid_cxr_casenotes", tmp_path / "covid", 64)
    assert counts["accepted"] + counts["rejected"] == len(recs) and counts["accepted"] >= 0.95 * len(recs)
    assert ImageStore.open(tmp_path / "covid").pixels.std() > 20
