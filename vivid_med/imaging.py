"""Decode PNG/JPEG/DICOM/NIfTI to uint8 grayscale, and the memory-mapped image store.

Store layout (docs/contracts.md), one folder per dataset:
``pixels.npy`` uint8 [N, S, S] (``np.load(mmap_mode="r")``), ``index.parquet`` (image_id, row),
``rejects.parquet`` (image_id, image_path, reason, detail): every input record is either a row of the index
or a row of the rejects, never silently lost.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pydicom
from PIL import Image
from pydantic import Field
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from tqdm.auto import tqdm

from vivid_med.params import PositiveInt, StrictParams
from vivid_med.sources.base import safe_join
from vivid_med.tables import Reason, read_table, write_table
from vivid_med.ums import SCHEMA_VERSION

MEAN, STD = 0.5, 0.25
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", "")   # DICOM files often have no extension

#: Reason codes of an image rejects table (members of ``vivid_med.tables.Reason``).
MISSING_IMAGE, PATH_OUTSIDE_ROOT, DUPLICATE_IMAGE, UNREADABLE_IMAGE, CORRUPT_IMAGE = (
    r.value for r in (Reason.MISSING_IMAGE, Reason.PATH_OUTSIDE_ROOT, Reason.DUPLICATE_IMAGE,
                      Reason.UNREADABLE_IMAGE, Reason.CORRUPT_IMAGE))

_META = {"vivid_med.schema_version": SCHEMA_VERSION}
INDEX_SCHEMA = pa.schema([pa.field("image_id", pa.string(), nullable=False),
                          pa.field("row", pa.int64(), nullable=False)], metadata=_META)
IMAGE_REJECTS_SCHEMA = pa.schema([pa.field("image_id", pa.string(), nullable=True),
                                  pa.field("image_path", pa.string(), nullable=True),
                                  pa.field("reason", pa.string(), nullable=False),
                                  pa.field("detail", pa.string(), nullable=True)], metadata=_META)


class ImagesParams(StrictParams):
    """The ``images:`` section: how every dataset's images are decoded into its store."""

    size: PositiveInt   # store side (px): images are zero-padded to square and resized
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None  # [centre, width] (HU) or the file's own
    workers: PositiveInt  # decode processes (1 = in-process)


class UnreadableImage(Exception):
    """A file that is there but cannot be used (not a decoder failure)."""


def _window(x: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    centre, width = window
    return np.clip((x - (centre - width / 2)) / width, 0.0, 1.0)


def _minmax(x: np.ndarray, lo_q: float = 0.0, hi_q: float = 100.0) -> np.ndarray:
    x = np.nan_to_num(x.astype(np.float32))
    lo, hi = np.percentile(x, (lo_q, hi_q)) if (lo_q, hi_q) != (0.0, 100.0) else (x.min(), x.max())
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(x)


def _read_raster(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I", "F"):     # 16-bit / float PNG or TIFF: full range
            return _minmax(np.asarray(im))
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _read_dicom(path: Path, frame: int | None, window: tuple[float, float] | None) -> np.ndarray:
    """Stored values -> modality LUT (slope/intercept) -> VOI LUT or ``window`` -> [0,1]; MONOCHROME1 inverted."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        arr = arr.mean(axis=-1)
    if arr.ndim == 3:
        arr = arr[_frame(frame, arr.shape[0], path)]
    arr = apply_modality_lut(arr, ds)
    if window is not None:
        out = _window(arr, window)
    else:
        out = _minmax(apply_voi_lut(arr, ds) if "WindowCenter" in ds or "VOILUTSequence" in ds else arr)
    return 1.0 - out if ds.get("PhotometricInterpretation") == "MONOCHROME1" else out


def _read_nifti(path: Path, frame: int | None, window: tuple[float, float] | None) -> np.ndarray:
    """One axial slice (third axis; first volume of 4D), scaled by the header, radiological display."""
    img = nib.load(path)
    shape = img.shape
    if len(shape) < 2:
        raise UnreadableImage(f"NIfTI with shape {shape} is not an image")
    if len(shape) == 2:
        arr = np.asarray(img.dataobj)
    else:
        k = _frame(frame, shape[2], path)
        arr = np.asarray(img.dataobj[(slice(None), slice(None), k) + (0,) * (len(shape) - 3)])
    arr = np.rot90(arr.astype(np.float32))            # rows = anterior -> posterior
    return _window(arr, window) if window is not None else _minmax(arr, 0.5, 99.5)


def _frame(frame: int | None, n: int, path: Path) -> int:
    k = n // 2 if frame is None else int(frame)
    if not 0 <= k < n:
        raise UnreadableImage(f"frame {k} out of range: {path.name} has {n}")
    return k


def read_image(path: str | Path, frame: int | None = None,
               window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode one image to float32 [H, W] in [0, 1] (bright = dense). ``frame`` picks a DICOM frame or a
    NIfTI slice (default: the middle one); ``window`` = (centre, width) in modality units (e.g. HU)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        img = _read_nifti(path, frame, window)
    elif suffix in RASTER_SUFFIXES:
        img = _read_raster(path)
    elif suffix in DICOM_SUFFIXES:
        img = _read_dicom(path, frame, window)
    else:
        raise UnreadableImage(f"unsupported file type {suffix!r}")
    return np.ascontiguousarray(img, dtype=np.float32)


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """float [H, W] in [0, 1] -> uint8 [size, size]: zero-pad to square (centred), then area-average
    (BOX) when shrinking or bicubic when enlarging."""
    h, w = image.shape
    s = max(h, w)
    if h != w:
        square = np.zeros((s, s), np.float32)
        square[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = image
        image = square
    resample = Image.Resampling.BOX if s >= size else Image.Resampling.BICUBIC
    out = np.asarray(Image.fromarray(np.ascontiguousarray(image, np.float32)).resize((size, size), resample))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def load_image(path: Path, size: int, frame: int | None = None,
               window: tuple[float, float] | None = None) -> tuple[np.ndarray | None, str | None, str | None]:
    """(uint8 [size, size], None, None), or (None, reason, detail) when the file cannot be used."""
    if not path.is_file() or not os.access(path, os.R_OK):
        return None, UNREADABLE_IMAGE, "not a readable file"
    try:
        return fit(read_image(path, frame, window), size), None, None
    except UnreadableImage as e:
        return None, UNREADABLE_IMAGE, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt file, recorded with its message
        return None, CORRUPT_IMAGE, f"{type(e).__name__}: {e}"[:500]


def _load_job(job: tuple[Path, int | None], size: int, window) -> tuple:
    return load_image(job[0], size, job[1], window)


def build_store(records: pd.DataFrame, root: str | Path, out_dir: str | Path, size: int,
                window: tuple[float, float] | None = None, workers: int = 1) -> dict:
    """Decode ``records`` (columns image_id, image_path relative to ``root``; optional ``frame``) into the
    store at ``out_dir``. Returns counts: input, accepted, rejected, rejects_by_reason."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = records["frame"] if "frame" in records else pd.Series([None] * len(records))
    rejects, jobs, ids, seen = [], [], [], set()
    for i, (iid, rel, fr) in enumerate(zip(records["image_id"], records["image_path"], frames)):
        reason, detail = None, None
        if iid in seen:
            reason = DUPLICATE_IMAGE
        elif rel is None or pd.isna(rel) or not str(rel):
            reason, detail = MISSING_IMAGE, "empty image_path"
        else:
            try:
                path = safe_join(root, str(rel))
                if not path.exists():
                    reason = MISSING_IMAGE
            except ValueError as e:
                reason, detail = PATH_OUTSIDE_ROOT, str(e)
        seen.add(iid)
        if reason:
            rejects.append((i, iid, rel, reason, detail))
        else:
            jobs.append((path, None if fr is None or pd.isna(fr) else int(fr)))
            ids.append((i, iid, rel))

    load = partial(_load_job, size=size, window=window)
    tmp_path, final_path = out_dir / "pixels.tmp.npy", out_dir / "pixels.npy"
    tmp = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=(len(jobs), size, size))
    ok = np.zeros(len(jobs), bool)
    with ProcessPoolExecutor(workers) if workers > 1 else _Serial() as pool:
        results = pool.map(load, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers))))
        for j, (img, reason, detail) in enumerate(tqdm(results, total=len(jobs), desc=f"images {out_dir.name}")):
            if img is None:
                rejects.append((*ids[j], reason, detail))
            else:
                tmp[j], ok[j] = img, True
    tmp.flush()
    _compact(tmp, ok, final_path)
    del tmp
    tmp_path.unlink()

    accepted = [ids[j][1] for j in np.flatnonzero(ok)]
    write_table(pd.DataFrame({"image_id": accepted, "row": np.arange(len(accepted), dtype=np.int64)}),
                out_dir / "index.parquet", INDEX_SCHEMA, {"size": size})
    rej = pd.DataFrame(sorted(rejects, key=lambda r: r[0]),
                       columns=["input_row", "image_id", "image_path", "reason", "detail"])
    write_table(rej, out_dir / "rejects.parquet", IMAGE_REJECTS_SCHEMA)
    return {"input": len(records), "accepted": len(accepted), "rejected": len(rej),
            "rejects_by_reason": {k: int(v) for k, v in sorted(rej["reason"].value_counts().items())}}


class _Serial:
    """In-process stand-in for an executor (``map`` + context manager)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(fn, items, chunksize: int = 1):
        return map(fn, items)


def _compact(tmp: np.ndarray, ok: np.ndarray, path: Path, chunk: int = 4096) -> None:
    """Write the accepted rows of ``tmp`` to ``path`` as a .npy (chunked, never all in memory)."""
    n, size = int(ok.sum()), tmp.shape[-1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size))
    keep, start = np.flatnonzero(ok), 0
    for k in range(0, n, chunk):
        sel = keep[k:k + chunk]
        out[start:start + len(sel)] = tmp[sel]
        start += len(sel)
    out.flush()


@dataclass
class ImageStore:
    """A dataset's stored images: ``pixels`` uint8 [N, S, S] (memory-mapped), ``index`` (image_id, row)."""

    pixels: np.ndarray
    index: pd.DataFrame
    rejects: pd.DataFrame

    @classmethod
    def open(cls, directory: str | Path) -> "ImageStore":
        d = Path(directory)
        if not (d / "pixels.npy").exists():
            raise FileNotFoundError(f"{d}: no pixels.npy (run the images stage)")
        pixels = np.load(d / "pixels.npy", mmap_mode="r")
        index = read_table(d / "index.parquet", INDEX_SCHEMA)
        if len(index) != len(pixels) or not np.array_equal(index["row"].to_numpy(), np.arange(len(pixels))):
            raise ValueError(f"{d}: index.parquet ({len(index)} rows) does not match pixels.npy {pixels.shape}")
        return cls(pixels, index, read_table(d / "rejects.parquet", IMAGE_REJECTS_SCHEMA))

    def __post_init__(self) -> None:
        self._row = dict(zip(self.index["image_id"], self.index["row"]))

    def __len__(self) -> int:
        return len(self.pixels)

    def rows(self, image_ids) -> np.ndarray:
        """Pixel rows (int64 [len(image_ids)]) of ``image_ids``; KeyError naming ids not in the store."""
        missing = [i for i in image_ids if i not in self._row]
        if missing:
            raise KeyError(f"{len(missing)} image id(s) not in the store (see rejects.parquet), e.g. {missing[:3]}")
        return np.fromiter((self._row[i] for i in image_ids), np.int64, count=len(image_ids))


def to_tensor(images):
    """uint8 [B, S, S] (numpy or torch) -> float32 tensor [B, 1, S, S], normalised (x/255 - 0.5) / 0.25."""
    import torch  # imported here: decoding and the images stage do not need torch

    if not isinstance(images, torch.Tensor):
        images = np.asarray(images)
        images = torch.from_numpy(images if images.flags.writeable else images.copy())
    x = images
    if x.dtype != torch.uint8 or x.ndim != 3:
        raise ValueError(f"to_tensor: expected uint8 [B, S, S], got {x.dtype} {tuple(x.shape)}")
    return ((x.float() / 255.0 - MEAN) / STD).unsqueeze(1)
