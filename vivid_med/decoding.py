"""Decode one image file (PNG/JPEG/DICOM/NIfTI) to float32 grayscale in [0, 1] and fit it to the store's square.

Hostile files are refused before they cost memory or turn into silent zeros: ``declared_size`` reads an image's
size from its header alone (nothing decoded), ``read_image`` refuses an image over ``max_pixels`` (``TooLarge``)
before decoding it, and one whose pixels are all one value or all NaN (``BlankImage``) before scaling it.
``load_image`` turns every refusal and decoder failure into a rejects reason (``vivid_med.tables.Reason``).
``decode`` is ``read_image`` for the store: an 8-bit raster stays uint8 (``fit`` resamples it in float32 as before,
and only pads one that needs no resampling), so the stored pixels are those of the float path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from vivid_med.tables import Reason

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", "")   # DICOM files often have no extension

Window = tuple[float, float]


class ImageRejected(Exception):
    """A file that is there but cannot be used (not a decoder failure); ``reason`` is its rejects code."""

    reason: str = Reason.UNREADABLE_IMAGE.value


class UnreadableImage(ImageRejected):
    """An unsupported file type, a frame out of range, a NIfTI that is not an image."""


class TooLarge(ImageRejected):
    """The header declares more pixels than ``max_pixels``."""

    reason = Reason.TOO_LARGE.value


class BlankImage(ImageRejected):
    """Every pixel of the image (or of the chosen frame / slice) has one value, or none is a number."""

    reason = Reason.BLANK_IMAGE.value


@contextmanager
def _no_pil_bomb_check() -> Iterator[None]:
    """PIL's own decompression-bomb check off (it warns over ~89 Mpx and refuses over ~179 Mpx): ``max_pixels``,
    read from the header first, is the one limit. PIL keeps it in a module global: one decode per thread."""
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""     # PurePath.suffix's rule, on the name read once
    if suffix in RASTER_SUFFIXES:
        return "raster"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    raise UnreadableImage(f"unsupported file type {suffix!r}")


def declared_size(path: str | Path) -> tuple[int, int, int]:
    """(frames, height, width) that ``read_image`` would decode, from the file's header alone. ``frames``: every
    frame of a DICOM (all are decoded), one slice of a NIfTI, the first frame of a raster file."""
    path = Path(path)
    kind = _kind(path)
    if kind == "raster":
        with _no_pil_bomb_check(), Image.open(path) as im:   # lazy: reads the header, decodes nothing
            return 1, im.height, im.width
    if kind == "nifti":
        shape = nib.load(path).shape                         # header only; the data stay on disk
        if len(shape) < 2:
            raise UnreadableImage(f"NIfTI with shape {shape} is not an image")
        return 1, shape[1], shape[0]                         # a slice is shown rotated (rows = second axis)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return max(1, int(ds.get("NumberOfFrames", 1) or 1)), int(ds.Rows), int(ds.Columns)


def check_size(path: str | Path, max_pixels: int) -> None:
    """TooLarge when the image, padded to the square ``fit`` makes of it (times its frames), would hold more
    than ``max_pixels`` pixels: what decoding it costs in memory, known before decoding."""
    _check_pixels(*declared_size(path), max_pixels)


def _check_pixels(frames: int, height: int, width: int, max_pixels: int) -> None:
    pixels = frames * max(height, width) ** 2
    if pixels > max_pixels:
        what = f"{width} x {height}" + (f" x {frames} frames" if frames > 1 else "")
        raise TooLarge(f"header declares {what} pixels: {pixels:,} once padded to a square, "
                       f"over max_pixels {max_pixels:,}")


def _check_not_blank(x: np.ndarray, where: str = "") -> None:
    """BlankImage when no value of ``x`` is finite, or all the finite ones are equal (scaling would make an
    all-zero image of it); ``where`` names the frame or slice."""
    if x.size == 0:
        raise UnreadableImage(f"{where}no pixels")
    if x.dtype.kind in "iu" and x.flat[0] != x.flat[x.size // 2]:
        return                                    # two values differ: not blank, no need to scan
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.any():
            raise BlankImage(f"{where}all NaN" if np.isnan(x).all() else f"{where}no finite value")
        if not finite.all():
            x = x[finite]
    lo, hi = x.min(), x.max()
    if lo == hi:
        raise BlankImage(f"{where}constant value {lo:g}")


def _window(x: np.ndarray, window: Window) -> np.ndarray:
    centre, width = window
    return np.nan_to_num(np.clip((x - (centre - width / 2)) / width, 0.0, 1.0), nan=0.0)


def _minmax(x: np.ndarray, lo_q: float = 0.0, hi_q: float = 100.0) -> np.ndarray:
    """[0, 1] from the ``lo_q``..``hi_q`` percentile range, or the full range where that one collapses (an image
    that is mostly one value)."""
    x = np.nan_to_num(x.astype(np.float32))
    lo, hi = np.percentile(x, (lo_q, hi_q)) if (lo_q, hi_q) != (0.0, 100.0) else (x.min(), x.max())
    if hi <= lo:
        lo, hi = x.min(), x.max()
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(x)


def _frame(frame: int | None, n: int, path: Path) -> int:
    k = n // 2 if frame is None else int(frame)
    if not 0 <= k < n:
        raise UnreadableImage(f"frame {k} out of range: {path.name} has {n}")
    return k


def _read_raster(path: Path, frame: int | None, window: Window | None, max_pixels: int | None = None) -> np.ndarray:
    """float32 [0, 1] for a 16-bit / float file (its full range), else the 8-bit grey values as they are (uint8:
    ``as_float`` makes the [0, 1] image of them). ``max_pixels`` is checked on the header this open has read."""
    with Image.open(path) as im:                       # lazy: the header only
        if max_pixels is not None:
            _check_pixels(1, im.height, im.width, max_pixels)
        im.load()
        if im.mode in ("I;16", "I;16B", "I", "F"):     # 16-bit / float PNG or TIFF: full range
            x = np.asarray(im)
            _check_not_blank(x)
            return _minmax(x)
        gray = np.asarray(im if im.mode == "L" else im.convert("L"))
    _check_not_blank(gray)
    return gray


def as_float(image: np.ndarray) -> np.ndarray:
    """float32 [0, 1] of a decoded image: 8-bit grey values / 255, a float image as it is."""
    if image.dtype == np.uint8:
        x = image.astype(np.float32)
        x /= 255.0                                    # in place: the values of astype(float32) / 255.0
        return x
    return np.ascontiguousarray(image, dtype=np.float32)


def _read_dicom(path: Path, frame: int | None, window: Window | None) -> np.ndarray:
    """Stored values -> modality LUT (slope/intercept) -> VOI LUT or ``window`` -> [0,1]; MONOCHROME1 inverted.
    Blank is judged after the modality LUT (a slope of 0 makes any image constant)."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        arr = arr.mean(axis=-1)
    where = ""
    if arr.ndim == 3:
        k = _frame(frame, arr.shape[0], path)
        arr, where = arr[k], f"frame {k}: "
    arr = apply_modality_lut(arr, ds)
    _check_not_blank(arr, where)
    if window is not None:
        out = _window(arr, window)
    else:
        out = _minmax(apply_voi_lut(arr, ds) if "WindowCenter" in ds or "VOILUTSequence" in ds else arr)
    return 1.0 - out if ds.get("PhotometricInterpretation") == "MONOCHROME1" else out


def _read_nifti(path: Path, frame: int | None, window: Window | None) -> np.ndarray:
    """One axial slice (third axis; first volume of 4D), scaled by the header, radiological display."""
    img = nib.load(path)
    shape = img.shape
    if len(shape) < 2:
        raise UnreadableImage(f"NIfTI with shape {shape} is not an image")
    if len(shape) == 2:
        arr, where = np.asarray(img.dataobj), ""
    else:
        k = _frame(frame, shape[2], path)
        arr, where = np.asarray(img.dataobj[(slice(None), slice(None), k) + (0,) * (len(shape) - 3)]), f"slice {k}: "
    _check_not_blank(arr, where)
    arr = np.rot90(arr.astype(np.float32))            # rows = anterior -> posterior
    return _window(arr, window) if window is not None else _minmax(arr, 0.5, 99.5)


_READERS: dict[str, Callable[[Path, int | None, Window | None], np.ndarray]] = {
    "raster": _read_raster, "dicom": _read_dicom, "nifti": _read_nifti}


def read_image(path: str | Path, frame: int | None = None, window: Window | None = None,
               max_pixels: int | None = None) -> np.ndarray:
    """Decode one image to float32 [H, W] in [0, 1] (bright = dense). ``frame`` picks a DICOM frame or a
    NIfTI slice (default: the middle one); ``window`` = (centre, width) in modality units (e.g. HU).
    ``max_pixels``: refuse a larger image from its header (``check_size``) before decoding; None: no limit."""
    return as_float(decode(path, frame, window, max_pixels))


def decode(path: str | Path, frame: int | None = None, window: Window | None = None,
           max_pixels: int | None = None) -> np.ndarray:
    """``read_image`` without the last step: an 8-bit raster stays uint8 (its grey values), anything else is
    float32 [0, 1]; ``fit`` takes either, and ``as_float`` turns the first into ``read_image``'s image."""
    path = path if isinstance(path, Path) else Path(path)
    kind = _kind(path)
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # _no_pil_bomb_check, inlined (once per image)
    try:
        if kind == "raster":                           # one open: the header checked, then decoded
            return _read_raster(path, frame, window, max_pixels)
        if max_pixels is not None:
            check_size(path, max_pixels)
        return _READERS[kind](path, frame, window)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """float [H, W] in [0, 1] (or uint8 grey values, as ``decode`` returns an 8-bit raster) -> uint8
    [size, size]: zero-pad to square (centred), then area-average (BOX) when shrinking or bicubic when enlarging.

    Resampling is done in float32 (then ``rint(x * 255)``). uint8 is padded in uint8 and turned into PIL's float
    image by a lookup table of ``as_float``'s 256 values (no float array in between); uint8 whose square already has
    the store's side is only padded: the float round trip is the identity on 8-bit
    values. Either way the pixels are those of the float path (tests/test_imaging.py checks both against
    ``fit(as_float(x))``)."""
    h, w = image.shape
    s = max(h, w)
    eight_bit = image.dtype == np.uint8
    if h != w:
        square = np.zeros((s, s), np.uint8 if eight_bit else np.float32)   # zeros: 0.0 in float either way
        square[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = image
        image = square
    if eight_bit and s == size:
        return image.copy()                                                 # size² bytes: never the caller's array
    pil = (Image.fromarray(image).point(_FLOAT_OF_8_BIT, "F") if eight_bit  # PIL's image of as_float(image)
           else Image.fromarray(np.ascontiguousarray(image, np.float32)))
    resample = Image.Resampling.BOX if s >= size else Image.Resampling.BICUBIC
    out = np.asarray(pil.resize((size, size), resample))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


#: as_float of each 8-bit value (float32, as Python floats: exact), PIL's lookup table from mode L to mode F
_FLOAT_OF_8_BIT = as_float(np.arange(256, dtype=np.uint8)).tolist()


def file_problem(path: Path) -> tuple[str, str] | None:
    """(reason, detail) when ``path`` is not a readable regular file, else None."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return Reason.MISSING_IMAGE.value, "no such file"
    except OSError as e:                              # a name too long, a folder without permission
        return Reason.UNREADABLE_IMAGE.value, f"cannot stat: {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return Reason.NOT_A_FILE.value, "a directory"
    if not stat.S_ISREG(st.st_mode):
        return Reason.NOT_A_FILE.value, "not a regular file (a FIFO, socket or device)"
    if not os.access(path, os.R_OK):
        return Reason.UNREADABLE_IMAGE.value, "no permission to read"
    return None


def load_image(path: Path, size: int, frame: int | None = None, window: Window | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray | None, str | None, str | None]:
    """(uint8 [size, size], None, None), or (None, reason, detail) when the file cannot be used."""
    problem = file_problem(path)
    if problem:
        return None, *problem
    return load_file(path, size, frame, window, max_pixels)


def load_file(path: Path, size: int, frame: int | None = None, window: Window | None = None,
              max_pixels: int | None = None) -> tuple[np.ndarray | None, str | None, str | None]:
    """``load_image`` of a path already known to be a readable regular file (``file_problem`` is None)."""
    try:
        return fit(decode(path, frame, window, max_pixels), size), None, None
    except ImageRejected as e:
        return None, e.reason, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt file, recorded with its message
        return None, Reason.CORRUPT_IMAGE.value, f"{type(e).__name__}: {e}"[:500]
