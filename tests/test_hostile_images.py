"""Issue #11, the images side: hostile image files, hostile params and interrupted runs.

Every case is a real file (PIL / pydicom / nibabel, or a PNG or NIfTI written byte by byte where the point is a
header that lies about the size). One rule holds throughout: every input row is accepted or rejected with a
reason (``assert_accounted``), and a failed or killed run leaves the previous store as it was (``assert_store``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

import faults
from helpers import write_params, write_runtime
from vivid_med.decoding import read_image
from vivid_med.imaging import (
    BLANK_IMAGE, MISSING_IMAGE, NOT_A_FILE, PATH_OUTSIDE_ROOT, TOO_LARGE, UNREADABLE_IMAGE, ImagesParams,
    ImageStore, build_store,
)
from vivid_med.params import ParamsError, validate_section

CT_SMALL = get_testdata_file("CT_small.dcm")
MAX_PIXELS = 50_000_000          # the images.max_pixels these tests run with
IMAGES = {"size": 16, "window": None, "max_pixels": MAX_PIXELS}


# --- helpers -----------------------------------------------------------------------------------------------

def records(*rows: tuple) -> pd.DataFrame:
    """(image_id, image_path[, frame]) rows -> the columns ``build_store`` reads."""
    df = pd.DataFrame([(*r, None)[:3] for r in rows], columns=["image_id", "image_path", "frame"])
    df["frame"] = df["frame"].astype("Int64")
    return df


def assert_accounted(counts: dict, recs: pd.DataFrame, store_dir: Path) -> ImageStore:
    """The rule: input = accepted + rejected, and every input row is in the index or the rejects (in order)."""
    store = ImageStore.open(store_dir)
    assert counts["input"] == len(recs) == counts["accepted"] + counts["rejected"]
    assert len(store) == counts["accepted"] and len(store.rejects) == counts["rejected"]
    assert sum(counts["rejects_by_reason"].values()) == counts["rejected"]
    assert sorted([*store.index["image_id"], *store.rejects["image_id"]]) == sorted(recs["image_id"])
    return store


def reject(store: ImageStore, image_id: str) -> tuple[str, str | None]:
    """(reason, detail) of ``image_id``'s reject."""
    row = store.rejects.set_index("image_id").loc[image_id]
    return row["reason"], row["detail"]


def build_one(tmp_path: Path, root: Path, rel: str, frame: int | None = None, **kw) -> tuple[ImageStore, dict]:
    """A store of one image; the store and its counts (the rule checked)."""
    recs = records(("x", rel, frame))
    counts = build_store(recs, root, tmp_path / "store", 16, max_pixels=kw.pop("max_pixels", MAX_PIXELS), **kw)
    return assert_accounted(counts, recs, tmp_path / "store"), counts


def write_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """An 8-bit grey PNG of zeros, its IDAT streamed through zlib (never all in memory): 100 megapixels make a
    file of about 100 KB. ``rows``: write only that many rows (a valid header over truncated data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row, idat = zlib.compressobj(9), bytes(width + 1), []   # each row: filter byte 0, then the pixels
    stop = height if rows is None else rows
    for start in range(0, stop, 256):
        idat.append(z.compress(row * min(256, stop - start)))
    idat.append(z.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))
    return path


def write_dicom(path: Path, pixels: np.ndarray | None = None, **attrs) -> Path:
    """CT_small.dcm (a real CT slice) with ``pixels`` as its stored values and header ``attrs`` changed."""
    ds = pydicom.dcmread(CT_SMALL)
    if pixels is not None:
        ds.PixelData = pixels.astype(np.int16).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path)
    return path


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory) -> Path:
    """The issue's file: a PNG of about 100 KB that declares 10000 x 10000 = 100 megapixels."""
    return write_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 10_000, 10_000)


# --- too large: refused from the header, before decoding ----------------------------------------------------

def test_png_declaring_100_megapixels_is_too_large_before_decoding(png_bomb, tmp_path):
    assert png_bomb.stat().st_size < 150_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # PIL's DecompressionBombWarning must not leak (nor decide)
        tracemalloc.start()
        store, counts = build_one(tmp_path, png_bomb.parent, png_bomb.name)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert counts["rejects_by_reason"] == {TOO_LARGE: 1}
    reason, detail = reject(store, "x")
    assert "10000 x 10000" in detail and "100,000,000" in detail and "50,000,000" in detail
    assert peak < 5_000_000, f"{peak:,} bytes traced"


def test_peak_memory_of_the_100_megapixel_png_in_a_fresh_process(png_bomb, tmp_path):
    """Resident memory (ru_maxrss) of a process that loads the bomb after a small image: unchanged by it."""
    small = tmp_path / "small.png"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(small)
    script = (
        "import json, resource, sys; from pathlib import Path; from vivid_med.decoding import load_image\n"
        "rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "assert load_image(Path(sys.argv[1]), 64, max_pixels=int(sys.argv[3]))[1] is None\n"
        "before = rss(); _, reason, detail = load_image(Path(sys.argv[2]), 64, max_pixels=int(sys.argv[3]))\n"
        "print(json.dumps({'reason': reason, 'delta': rss() - before, 'before': before}))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(small), str(png_bomb), str(MAX_PIXELS)],
                          capture_output=True, text=True, cwd=faults.REPO, check=True)
    got = json.loads(proc.stdout)
    assert got["reason"] == TOO_LARGE and proc.stderr == ""
    assert got["delta"] < 10_000_000, got   # decoding it would take about 1 GB


def test_larger_than_pils_own_refusal_is_still_our_too_large(tmp_path):
    """20000 x 20000 is over twice PIL's limit, where Image.open itself raises: the reason stays too_large (and
    the header decides: the file holds one row, decoding it would fail)."""
    write_png(tmp_path / "huge.png", 20_000, 20_000, rows=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store, counts = build_one(tmp_path, tmp_path, "huge.png")
    assert reject(store, "x")[0] == TOO_LARGE and "20000 x 20000" in reject(store, "x")[1]


def test_limit_counts_the_padded_square(tmp_path):
    """max_pixels bounds what decoding costs: the image padded to a square (longer side²); 64 x 64 fits 4096
    pixels, 65 x 10 does not (65² = 4225 > 4096)."""
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(tmp_path / "fits.png")
    Image.fromarray(np.arange(650, dtype=np.uint8).reshape(10, 65) % 251).save(tmp_path / "sliver.png")
    recs = records(("fits", "fits.png"), ("sliver", "sliver.png"))
    counts = build_store(recs, tmp_path, tmp_path / "store", 16, max_pixels=64 * 64)
    store = assert_accounted(counts, recs, tmp_path / "store")
    assert list(store.index["image_id"]) == ["fits"]
    assert reject(store, "sliver") == (TOO_LARGE, "header declares 65 x 10 pixels: 4,225 once padded to a square, "
                                                  "over max_pixels 4,096")


def test_dicom_declaring_large_rows_and_columns_is_too_large(tmp_path):
    write_dicom(tmp_path / "big.dcm", Rows=30_000, Columns=20_000)      # 32 KB of pixel data, header says 600 Mpx
    tracemalloc.start()
    store, _ = build_one(tmp_path, tmp_path, "big.dcm")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    reason, detail = reject(store, "x")
    assert reason == TOO_LARGE and "20000 x 30000 pixels" in detail
    assert peak < 5_000_000, f"{peak:,} bytes traced"


def test_dicom_frames_count(tmp_path):
    """Every frame of a DICOM is decoded, so all count: 4000 frames of 128 x 128 = 65.5 Mpx."""
    write_dicom(tmp_path / "frames.dcm", NumberOfFrames=4000)
    store, _ = build_one(tmp_path, tmp_path, "frames.dcm")
    assert reject(store, "x") == (TOO_LARGE, "header declares 128 x 128 x 4000 frames pixels: 65,536,000 once "
                                             "padded to a square, over max_pixels 50,000,000")


def test_nifti_declaring_a_huge_slice_is_too_large(tmp_path):
    """A .nii whose header says 30000 x 20000 x 3 but holds a few bytes: one slice is 600 Mpx."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30_000, 20_000, 3))
    hdr.set_data_dtype(np.uint8)
    hdr["vox_offset"] = 352
    with open(tmp_path / "huge.nii", "wb") as f:
        f.write(hdr.binaryblock + bytes(4) + bytes(64))
    tracemalloc.start()
    store, _ = build_one(tmp_path, tmp_path, "huge.nii")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    reason, detail = reject(store, "x")
    assert reason == TOO_LARGE and "30000 x 20000 pixels" in detail
    assert peak < 5_000_000, f"{peak:,} bytes traced"


def test_real_chest_cr_is_under_the_default_limit(tmp_path):
    path = get_testdata_file("RG1_UNCI.dcm")
    if path is None:
        pytest.skip("pydicom-data (RG1_UNCI.dcm) is not installed")
    shutil.copy(path, tmp_path / "cr.dcm")
    _, counts = build_one(tmp_path, tmp_path, "cr.dcm")
    assert counts["accepted"] == 1


# --- blank and NaN images ----------------------------------------------------------------------------------

def _png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return path.name


@pytest.mark.parametrize("name, array, detail", [
    ("black", np.zeros((20, 30), np.uint8), "constant value 0"),
    ("white", np.full((20, 30), 255, np.uint8), "constant value 255"),
    ("rgb", np.dstack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30)]), "constant value 18"),
    ("sixteen", np.full((20, 30), 1000, np.uint16), "constant value 1000"),
])
def test_constant_png_is_blank(tmp_path, name, array, detail):
    store, _ = build_one(tmp_path, tmp_path, _png(tmp_path / f"{name}.png", array))
    assert reject(store, "x") == (BLANK_IMAGE, detail)


def test_nearly_constant_16_bit_png_is_kept(tmp_path):
    x = np.full((20, 30), 1000, np.uint16)
    x[3, 4] = 1001
    store, counts = build_one(tmp_path, tmp_path, _png(tmp_path / "almost.png", x))
    assert counts["accepted"] == 1 and store.pixels.max() > 0


@pytest.mark.parametrize("attrs, detail", [
    ({}, "constant value -524"),                            # stored 500, intercept -1024
    ({"RescaleSlope": 0}, "constant value -1024"),          # a slope of 0 makes any image constant
])
def test_constant_dicom_is_blank_after_the_modality_lut(tmp_path, attrs, detail):
    stored = np.full((128, 128), 500) if not attrs else pydicom.dcmread(CT_SMALL).pixel_array
    write_dicom(tmp_path / "c.dcm", stored, **attrs)
    store, _ = build_one(tmp_path, tmp_path, "c.dcm")
    assert reject(store, "x") == (BLANK_IMAGE, detail)


def test_all_nan_float_dicom_is_blank(tmp_path):
    """A real float DICOM (Float Pixel Data) whose values are all NaN."""
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelData, ds.RescaleSlope, ds.RescaleIntercept
    ds.BitsAllocated, ds.FloatPixelData = 32, np.full((128, 128), np.nan, np.float32).tobytes()
    ds.save_as(tmp_path / "nan.dcm")
    store, _ = build_one(tmp_path, tmp_path, "nan.dcm")
    assert reject(store, "x") == (BLANK_IMAGE, "all NaN")


@pytest.fixture()
def nifti(tmp_path) -> Path:
    """A float volume: slice 0 an image, 1 constant, 2 all NaN, 3 NaN except one constant patch, 4 one voxel
    different from the rest, 5 an image with a NaN hole."""
    vol = np.zeros((20, 24, 6), np.float32)
    vol[..., 0] = np.arange(20 * 24).reshape(20, 24)
    vol[..., 1] = 7.0
    vol[..., 2] = np.nan
    vol[..., 3] = np.nan
    vol[2:5, 2:5, 3] = 3.0
    vol[3, 3, 4] = 1.0
    vol[..., 5] = vol[..., 0]
    vol[5:9, 5:9, 5] = np.nan
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    return tmp_path / "vol.nii.gz"


def test_nifti_blank_slices(nifti, tmp_path):
    recs = records(*[(f"s{k}", nifti.name, k) for k in range(6)])
    counts = build_store(recs, nifti.parent, tmp_path / "store", 16, max_pixels=MAX_PIXELS)
    store = assert_accounted(counts, recs, tmp_path / "store")
    assert list(store.index["image_id"]) == ["s0", "s4", "s5"]
    assert reject(store, "s1") == (BLANK_IMAGE, "slice 1: constant value 7")
    assert reject(store, "s2") == (BLANK_IMAGE, "slice 2: all NaN")
    assert reject(store, "s3") == (BLANK_IMAGE, "slice 3: constant value 3")
    # one voxel in 480: the robust (0.5-99.5 %) range collapses, the full range is used instead of a zero image
    assert store.pixels[store.rows(["s4"])[0]].max() > 0


def test_nan_pixels_become_black_under_a_window(nifti):
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no 'invalid value encountered in cast'
        img = read_image(nifti, frame=5, window=(200, 400))
    assert np.isfinite(img).all() and (np.rot90(np.isnan(nib.load(nifti).get_fdata()[..., 5])) <= (img == 0)).all()


# --- not a file, paths ---------------------------------------------------------------------------------------

def test_directories_and_other_non_files(tmp_path):
    root = tmp_path / "root"
    (root / "dir.png").mkdir(parents=True)
    os.mkfifo(root / "fifo.png")                 # opening it would block forever
    (root / "to_dir.png").symlink_to(root / "dir.png")
    recs = records(("dir", "dir.png"), ("fifo", "fifo.png"), ("link", "to_dir.png"))
    counts = build_store(recs, root, tmp_path / "store", 16, max_pixels=MAX_PIXELS)
    store = assert_accounted(counts, recs, tmp_path / "store")
    assert counts["rejects_by_reason"] == {NOT_A_FILE: 3}
    assert reject(store, "dir") == (NOT_A_FILE, "a directory")
    assert reject(store, "fifo")[1].startswith("not a regular file")


def test_paths_that_leave_the_root_or_cannot_name_a_file(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside.png"
    (root / "sub").mkdir(parents=True)
    gradient = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gradient).save(outside)
    Image.fromarray(gradient).save(root / "sub" / "in.png")
    (root / "out_link.png").symlink_to(outside)                   # a symlink inside that points outside
    (root / "in_link.png").symlink_to(root / "sub" / "in.png")    # a symlink that stays inside
    (root / "loop_a.png").symlink_to(root / "loop_b.png")
    (root / "loop_b.png").symlink_to(root / "loop_a.png")
    recs = records(("out_link", "out_link.png"), ("in_link", "in_link.png"), ("dotdot", "../outside.png"),
                   ("absolute", str(outside)), ("loop", "loop_a.png"), ("nul", "sub/in\x00.png"),
                   ("long", "x" * 5000 + ".png"), ("gone", "sub/gone.png"), ("empty", ""))
    counts = build_store(recs, root, tmp_path / "store", 16, max_pixels=MAX_PIXELS)
    store = assert_accounted(counts, recs, tmp_path / "store")
    assert list(store.index["image_id"]) == ["in_link"]
    assert counts["rejects_by_reason"] == {MISSING_IMAGE: 2, PATH_OUTSIDE_ROOT: 3, UNREADABLE_IMAGE: 3}
    for iid in ("out_link", "dotdot", "absolute"):
        assert reject(store, iid)[0] == PATH_OUTSIDE_ROOT
    assert "loop" in reject(store, "loop")[1].lower() and "NUL" in reject(store, "nul")[1]
    assert reject(store, "long") == (UNREADABLE_IMAGE, "cannot stat: File name too long")


def test_folder_symlinks_and_paths_not_in_normal_form(tmp_path):
    """The store checks plain paths through real folders with lstat alone (no resolving): every other path is
    resolved as before. A folder symlink that stays inside the root is followed, one that leaves it is refused,
    a dataset root that is itself a symlink works, and each record gets what resolving it gives
    (``_check_path`` + ``load_image``, the reference): the same pixels, reason and detail."""
    from vivid_med.decoding import load_image
    from vivid_med.imaging import _check_path, _load_one

    real, outside = tmp_path / "real", tmp_path / "outside"
    (real / "sub" / "deep").mkdir(parents=True)
    outside.mkdir()
    gradient = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    for folder in (real / "sub", real / "sub" / "deep", outside):
        Image.fromarray(gradient).save(folder / "in.png")
    (real / "in_dir").symlink_to(real / "sub")                    # a folder symlink that stays inside
    (real / "out_dir").symlink_to(outside)                        # one that leaves the root
    (real / "sub" / "up").symlink_to(real)                        # one back up to the root
    (tmp_path / "root").symlink_to(real)                          # the dataset root through a symlink
    paths = {"plain": "sub/in.png", "deeper": "sub/deep/in.png", "in_dir": "in_dir/in.png",
             "in_dir_deep": "in_dir/deep/in.png", "out_dir": "out_dir/in.png", "up": "sub/up/sub/in.png",
             "dot": "./sub/in.png", "double_slash": "sub//in.png", "trailing_slash": "sub/in.png/",
             "updown": "sub/../sub/in.png", "escape_deep": "sub/../../outside/in.png", "dotdot": "..",
             "under_file": "sub/in.png/x.png", "gone_folder": "nofolder/x.png", "folder": "sub/deep",
             "root": ".", "gone": "sub/gone.png"}
    recs = records(*paths.items())
    counts = build_store(recs, tmp_path / "root", tmp_path / "store", 16, max_pixels=MAX_PIXELS)
    store = assert_accounted(counts, recs, tmp_path / "store")
    assert sorted(store.index["image_id"]) == sorted(["plain", "deeper", "in_dir", "in_dir_deep", "up", "dot",
                                                      "double_slash", "trailing_slash", "updown"])
    assert (store.pixels == gradient).all()
    assert {k for k in paths if k not in set(store.index["image_id"])} == set(store.rejects["image_id"])
    for iid in ("out_dir", "escape_deep", "dotdot"):
        assert reject(store, iid)[0] == PATH_OUTSIDE_ROOT, iid
    for iid, rel in paths.items():                                # the reference: resolve, then check the file
        path, reason, detail = _check_path(tmp_path / "root", rel)
        want = (None, reason, detail) if reason else load_image(path, 16, None, None, MAX_PIXELS)
        got = _load_one(tmp_path / "root", str(real), {}, rel, None, 16, None, MAX_PIXELS)
        assert got[1:] == want[1:], (iid, got[1:], want[1:])
        assert (got[0] is None) == (want[0] is None) and (got[0] is None or np.array_equal(got[0], want[0]))


# --- params --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("size", -64), ("size", 0), ("size", 100_000), ("max_pixels", 0),
                                        ("max_pixels", "50M")])
def test_images_params_refuse_bad_values(key, value):
    with pytest.raises(ParamsError, match=f"images.{key}"):
        validate_section(ImagesParams, {**IMAGES, key: value}, "images")


# --- the stage: atomic stores, failures and kills --------------------------------------------------------------

def make_project(folder: Path, images: dict) -> Path:
    """A scratch project: two datasets (records tables + info) over one root of real files, and params.yaml."""
    from vivid_med.fields import FIELDS
    from vivid_med.tables import RECORDS_SCHEMA, write_records

    root = folder / "root"
    root.mkdir(parents=True)
    for k in range(4):
        Image.fromarray((np.add.outer(np.arange(40), np.arange(30)) * (k + 1) % 256).astype(np.uint8)).save(
            root / f"p{k}.png")
    write_dicom(root / "ct.dcm")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "blank.png")
    (root / "dir.png").mkdir()
    datasets = {"toy_a": ["p0.png", "p1.png", "ct.dcm", "blank.png", "dir.png", "gone.png"],
                "toy_b": ["p2.png", "p3.png", "../escape.png"]}
    for name, paths in datasets.items():
        df = pd.DataFrame({n: "x" for n in RECORDS_SCHEMA.names}, index=range(len(paths)))
        df[list(FIELDS)] = None
        df["image_id"], df["image_path"] = [f"{name}_{k}" for k in range(len(paths))], paths
        write_records(df, folder / "data/records" / f"{name}.parquet", ("edema",))
        (folder / "data/records" / f"{name}.json").write_text(json.dumps({"root": str(root)}))
    write_params(folder, images=images)
    return folder


def outputs(project: Path) -> dict[str, str]:
    """sha256 of every file under data/images and metrics (temporary files included), by relative path."""
    found = faults.snapshot(*(p for p in (project / "data/images", project / "metrics") if p.exists()))
    return {str(Path(k).relative_to(project)): v for k, v in found.items()}


def assert_store(project: Path, name: str, expected: dict[str, str]) -> None:
    """``data/images/<name>`` opens and is byte for byte the store in ``expected`` (an ``outputs`` snapshot)."""
    ImageStore.open(project / "data/images" / name)
    prefix = f"data/images/{name}/"
    got = {k: v for k, v in outputs(project).items() if k.startswith(prefix)}
    assert got == {k: v for k, v in expected.items() if k.startswith(prefix)}, name


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A project built at size 16 (the old stores), and what a complete run at size 24 makes (the new ones)."""
    old = make_project(tmp_path_factory.mktemp("old"), IMAGES)
    assert faults.run(old, "-m", "stages.images").returncode == 0
    new = tmp_path_factory.mktemp("new") / "p"
    shutil.copytree(old, new, symlinks=True)
    write_params(new, images={**IMAGES, "size": 24})
    proc = faults.run(new, "-m", "stages.images")
    assert proc.returncode == 0, proc.stderr
    return old, outputs(old), outputs(new)


def test_stage_counts(built):
    old, before, _ = built
    metrics = json.loads((old / "metrics/images.json").read_text())
    assert metrics["toy_a"]["rejects_by_reason"] == {BLANK_IMAGE: 1, MISSING_IMAGE: 1, NOT_A_FILE: 1}
    assert metrics["toy_b"]["rejects_by_reason"] == {PATH_OUTSIDE_ROOT: 1}
    for m in metrics.values():
        assert m["input"] == m["accepted"] + m["rejected"]
    assert not [k for k in before if "/." in k or "tmp" in k]


def _copy(built, tmp_path: Path, workers: int = 1, **images) -> Path:
    """A copy of the built project, to be rebuilt at 24 px (``workers``: the runtime setting, runtime.yaml)."""
    project = tmp_path / "p"
    shutil.copytree(built[0], project, symlinks=True)
    write_params(project, images={**IMAGES, "size": 24, **images})
    write_runtime(project / "runtime.yaml", images={"workers": workers})
    return project


@pytest.mark.parametrize("point, new_stores", [
    ("images:decode", ()),                     # the first image of toy_a decoded into the temporary store
    ("commit:toy_a", ()),                      # toy_a complete in its temporary folder, about to be swapped in
    ("commit:toy_b", ("toy_a",)),              # toy_a swapped in, toy_b complete
    ("commit:images.json", ("toy_a", "toy_b")),  # both stores swapped in, the metrics about to be
])
def test_killed_run_leaves_old_or_new_stores_and_a_rerun_completes(built, tmp_path, point, new_stores):
    _, old, new = built
    project = _copy(built, tmp_path)
    assert faults.killed(faults.run(project, "-m", "stages.images", failpoint=point))
    for name in ("toy_a", "toy_b"):
        assert_store(project, name, new if name in new_stores else old)
    assert outputs(project)["metrics/images.json"] == old["metrics/images.json"]
    assert not list(project.rglob("pixels.tmp.npy"))
    proc = faults.run(project, "-m", "stages.images")
    assert proc.returncode == 0, proc.stderr
    assert outputs(project) == new                # complete, and nothing left behind by the killed run


@pytest.mark.parametrize("images, message", [({"size": -64}, "images.size"), ({"size": 0}, "images.size"),
                                             ({"max_pixels": 0}, "images.max_pixels")])
def test_refused_params_leave_the_stores(built, tmp_path, monkeypatch, images, message):
    from stages import images as stage

    project = _copy(built, tmp_path, **images)
    monkeypatch.chdir(project)
    with pytest.raises(ParamsError, match=message):
        stage.main([])
    assert outputs(project) == built[1]


def test_bad_input_found_before_any_store_is_touched(built, tmp_path, monkeypatch):
    from stages import images as stage

    project = _copy(built, tmp_path)
    monkeypatch.chdir(project)
    (project / "data/records/toy_b.json").write_text(json.dumps({"root": str(tmp_path / "unmounted")}))
    with pytest.raises(SystemExit, match="toy_b.json: the dataset root .* is not a folder"):
        stage.main([])
    (project / "data/records/toy_b.json").unlink()
    with pytest.raises(SystemExit, match="toy_b.json: missing"):
        stage.main([])
    assert outputs(project) == built[1]


def test_a_failure_between_stores_leaves_each_store_whole(built, tmp_path, monkeypatch):
    """toy_b's records table is unreadable: toy_a is already new, toy_b and the metrics stay old."""
    from stages import images as stage

    _, old, new = built
    project = _copy(built, tmp_path)
    monkeypatch.chdir(project)
    (project / "data/records/toy_b.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(Exception, match="toy_b.parquet|Parquet"):
        stage.main([])
    assert_store(project, "toy_a", new)
    assert_store(project, "toy_b", old)
    assert outputs(project)["metrics/images.json"] == old["metrics/images.json"]


@pytest.mark.slow
def test_killed_pool_leaves_no_worker_behind(built, tmp_path):
    """workers: 2, killed while decoding: the decode processes end with the stage (they would otherwise wait for
    work forever), the stores stay old, and a rerun completes."""
    _, old, _ = built
    project = _copy(built, tmp_path, workers=2)
    # an orphan would also hold the killed stage's output pipes open: without the fix this call would hang
    assert faults.killed(faults.run(project, "-m", "stages.images", failpoint="images:decode", timeout=60))
    deadline = time.monotonic() + 10
    while _processes_in(project) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_in(project)
    for name in ("toy_a", "toy_b"):
        assert_store(project, name, old)
    assert faults.run(project, "-m", "stages.images").returncode == 0


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is ``folder``."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == folder:
                out.append(int(proc.name))
        except OSError:
            continue
    return out
