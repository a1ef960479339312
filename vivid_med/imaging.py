"""The memory-mapped image store: every dataset's images decoded (``vivid_med.decoding``) into one array.

Store layout (docs/pipeline.md), one folder per dataset:
``pixels.npy`` uint8 [N, S, S] (``np.load(mmap_mode="r")``), ``index.parquet`` (image_id, row),
``rejects.parquet`` (image_id, image_path, reason, detail): every input record is either a row of the index
or a row of the rejects, never silently lost. ``index.parquet``'s metadata holds ``size`` and ``pixels_sha256``
(sha256 of the pixel bytes, row by row: ``ImageStore.digest``), computed while the rows are written.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import signal
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field
from tqdm.auto import tqdm

from vivid_med.decoding import Window, load_file, load_image
from vivid_med.io import failpoint
from vivid_med.params import PositiveInt, StrictParams
from vivid_med.sources.base import is_plain, plain_kind, safe_join
from vivid_med.tables import Reason, read_table, table_metadata, write_table
from vivid_med.ums import SCHEMA_VERSION

MEAN, STD = 0.5, 0.25
_PR_SET_PDEATHSIG = 1

#: Reason codes of an image rejects table (members of ``vivid_med.tables.Reason``).
(MISSING_IMAGE, PATH_OUTSIDE_ROOT, DUPLICATE_IMAGE, UNREADABLE_IMAGE, CORRUPT_IMAGE, NOT_A_FILE, TOO_LARGE,
 BLANK_IMAGE) = (r.value for r in (Reason.MISSING_IMAGE, Reason.PATH_OUTSIDE_ROOT, Reason.DUPLICATE_IMAGE,
                                   Reason.UNREADABLE_IMAGE, Reason.CORRUPT_IMAGE, Reason.NOT_A_FILE,
                                   Reason.TOO_LARGE, Reason.BLANK_IMAGE))

_META = {"vivid_med.schema_version": SCHEMA_VERSION}
INDEX_SCHEMA = pa.schema([pa.field("image_id", pa.string(), nullable=False),
                          pa.field("row", pa.int64(), nullable=False)], metadata=_META)
IMAGE_REJECTS_SCHEMA = pa.schema([pa.field("image_id", pa.string(), nullable=True),
                                  pa.field("image_path", pa.string(), nullable=True),
                                  pa.field("reason", pa.string(), nullable=False),
                                  pa.field("detail", pa.string(), nullable=True)], metadata=_META)


#: ``index.parquet`` metadata key (``vivid_med.<key>``) of the store's digest.
DIGEST_KEY = "pixels_sha256"


class ImagesParams(StrictParams):
    """The ``images:`` section: how every dataset's images are decoded into its store."""

    size: Annotated[int, Field(ge=1, le=4096)]  # store side (px): images are zero-padded to square and resized
    #   (at most 4096: a store costs size² bytes per image, decoding 4 x size² more)
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None  # [centre, width] (HU) or the file's own
    max_pixels: PositiveInt  # larger images (frames x longer side², read from the header) are too_large rejects


def _check_path(root: Path, rel: object) -> tuple[Path | None, str | None, str | None]:
    """(root / rel, None, None), or (None, reason, detail) for a path that cannot name a file under ``root``.
    Whether the file is there and is a file is ``load_image``'s check."""
    if rel is None or pd.isna(rel) or not str(rel):
        return None, MISSING_IMAGE, "empty image_path"
    if "\x00" in str(rel):
        return None, UNREADABLE_IMAGE, "image_path contains a NUL byte"
    try:
        return safe_join(root, str(rel)), None, None
    except ValueError as e:                    # absolute, '..' or a symlink that leaves the root
        return None, PATH_OUTSIDE_ROOT, str(e)
    except (RuntimeError, OSError) as e:       # a symlink loop
        return None, UNREADABLE_IMAGE, str(e)


def _load_one(root: Path, real_root: str, dirs: dict[str, str], rel: object, frame: int | None, size: int,
              window: Window | None, max_pixels: int | None) -> tuple:
    """(uint8 [size, size], None, None) or (None, reason, detail) for the record ``rel`` (a path under ``root``).

    The fast path: a plain path (``is_plain``) through real directories to a regular file (``plain_kind``: one
    ``lstat`` per directory per build and one per file) is ``real_root/rel`` itself, exactly what resolving it
    would give. Every other path (a symlink on the way, '..', absolute, odd names) is resolved by ``safe_join`` and
    checked by ``load_image``, as before: the same pixels, reasons and details either way."""
    if isinstance(rel, str) and is_plain(rel):
        kind = plain_kind(real_root, rel, dirs)
        path = os.path.join(real_root, rel)
        if kind == "file":
            if not os.access(path, os.R_OK):
                return None, UNREADABLE_IMAGE, "no permission to read"
            return load_file(Path(path), size, frame, window, max_pixels)  # the one Path of this file
        if kind == "missing":
            return None, MISSING_IMAGE, "no such file"
        if kind == "dir":
            return None, NOT_A_FILE, "a directory"
    path, reason, detail = _check_path(root, rel)
    if reason:
        return None, reason, detail
    return load_image(path, size, frame, window, max_pixels)


#: Per decode process: (build token, directory kinds) of the build it works for (a new build starts afresh).
_DIRS: tuple[str, dict[str, str]] = ("", {})


def _load_job(job: tuple[object, int | None], root: Path, real_root: str, token: str, size: int,
              window: Window | None, max_pixels: int | None) -> tuple:
    global _DIRS
    if _DIRS[0] != token:
        _DIRS = (token, {})
    return _load_one(root, real_root, _DIRS[1], job[0], job[1], size, window, max_pixels)


def build_store(records: pd.DataFrame, root: str | Path, out_dir: str | Path, size: int,
                window: Window | None = None, workers: int = 1, max_pixels: int | None = None,
                label: str | None = None) -> dict:
    """Decode ``records`` (columns image_id, image_path relative to ``root``; optional ``frame``) into the
    store at ``out_dir``, written in place (the images stage builds it in a temporary folder and swaps it in).
    ``max_pixels``: larger images are ``too_large`` rejects (None: no limit); ``label`` names the progress bar.
    Returns counts: input, accepted, rejected, rejects_by_reason (input = accepted + rejected)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = records["frame"] if "frame" in records else pd.Series([None] * len(records))
    rejects, jobs, ids, seen = [], [], [], set()
    for i, (iid, rel, fr) in enumerate(zip(records["image_id"], records["image_path"], frames)):
        if iid in seen:
            rejects.append((i, iid, rel, DUPLICATE_IMAGE, None))
        else:                                  # the path is checked by the decode process, with the file
            jobs.append((rel, None if fr is None or pd.isna(fr) else int(fr)))
            ids.append((i, iid, rel))
        seen.add(iid)

    load = partial(_load_job, root=Path(root), real_root=str(Path(root).resolve()), token=uuid.uuid4().hex,
                   size=size, window=window, max_pixels=max_pixels)
    # the .npy header for every job's row; rows are appended in order with plain writes, 32 at a time (page
    # faults of a new memory-mapped file cost several times more), and _keep_rows cuts the file to the accepted rows
    header = np.lib.format.open_memmap(out_dir / "pixels.npy", mode="w+", dtype=np.uint8,
                                       shape=(len(jobs), size, size))
    offset = header.offset
    del header
    accepted, digest = [], hashlib.sha256()
    pool = ProcessPoolExecutor(workers, initializer=_die_with, initargs=(os.getpid(),)) if workers > 1 else _Serial()
    with pool, open(out_dir / "pixels.npy", "r+b", buffering=0) as f:
        f.seek(offset)
        rows = _RowWriter(f, size * size)
        results = pool.map(load, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers))))
        for j, (img, reason, detail) in enumerate(tqdm(results, total=len(jobs),
                                                       desc=f"images {label or out_dir.name}")):
            if img is None:
                rejects.append((*ids[j], reason, detail))
            else:
                digest.update(rows.add(img, ids[j][2]))
                accepted.append(ids[j][1])
            failpoint("images:decode")
        rows.flush()
    _keep_rows(out_dir / "pixels.npy", len(accepted))

    write_table(pd.DataFrame({"image_id": accepted, "row": np.arange(len(accepted), dtype=np.int64)}),
                out_dir / "index.parquet", INDEX_SCHEMA, {"size": size, DIGEST_KEY: digest.hexdigest()})
    rej = pd.DataFrame(sorted(rejects, key=lambda r: r[0]),
                       columns=["input_row", "image_id", "image_path", "reason", "detail"])
    write_table(rej, out_dir / "rejects.parquet", IMAGE_REJECTS_SCHEMA)
    return {"input": len(records), "accepted": len(accepted), "rejected": len(rej),
            "rejects_by_reason": {k: int(v) for k, v in sorted(rej["reason"].value_counts().items())}}


class _RowWriter:
    """Appends uint8 rows of ``row_bytes`` bytes to the unbuffered file ``f`` at its position, ``batch`` rows per
    ``writev`` (one system call per row costs more than the copy)."""

    def __init__(self, f, row_bytes: int, batch: int = 32) -> None:
        self.fd, self.row_bytes, self.batch, self.pending = f.fileno(), row_bytes, batch, []

    def add(self, img: np.ndarray, where: object) -> memoryview:
        """Queue ``img``; its bytes (for the digest)."""
        row = memoryview(np.ascontiguousarray(img, np.uint8)).cast("B")
        if row.nbytes != self.row_bytes:
            raise RuntimeError(f"{where}: decoded to {img.shape}, not {self.row_bytes} pixels")
        self.pending.append(row)
        if len(self.pending) >= self.batch:
            self.flush()
        return row

    def flush(self) -> None:
        data, self.pending = self.pending, []
        done = os.writev(self.fd, data) if data else 0
        rest = sum(r.nbytes for r in data) - done
        if rest:                               # a short write: the remainder one call at a time
            tail = memoryview(b"".join(data))[done:]
            while tail:
                tail = tail[os.write(self.fd, tail):]


def _die_with(parent: int) -> None:
    """Decode worker initializer: end when the stage process ends, even when it is killed (an orphan would wait
    for work forever). Linux: the kernel sends SIGKILL; elsewhere only a parent already gone is noticed."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class _Serial:
    """In-process stand-in for an executor (``map`` + context manager)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(fn, items, chunksize: int = 1):
        return map(fn, items)


def _keep_rows(path: Path, n: int) -> None:
    """Shrink the .npy at ``path`` to its first ``n`` rows in place: the header rewritten for the new shape (the
    same length: numpy pads it so that the first axis can change) and the file truncated after row ``n``."""
    fmt = np.lib.format
    with open(path, "r+b") as f:
        fmt.read_magic(f)
        shape, fortran_order, dtype = fmt.read_array_header_1_0(f)
        offset = f.tell()
        header = io.BytesIO()
        fmt.write_array_header_1_0(header, {"descr": fmt.dtype_to_descr(dtype), "fortran_order": fortran_order,
                                            "shape": (n, *shape[1:])})
        if header.tell() != offset:
            raise RuntimeError(f"{path}: the .npy header would change length ({offset} -> {header.tell()} bytes)")
        f.seek(0)
        f.write(header.getvalue())
        f.truncate(offset + n * int(np.prod(shape[1:])) * dtype.itemsize)


def pixels_digest(pixels: np.ndarray, rows_per_block: int = 1024) -> str:
    """sha256 (hex) of ``pixels``' bytes in row-major order, read block by block (a memory-mapped store is never
    all in memory): what ``build_store`` records while it writes the rows."""
    h = hashlib.sha256()
    for start in range(0, len(pixels), rows_per_block):
        h.update(np.ascontiguousarray(pixels[start:start + rows_per_block]))
    return h.hexdigest()


@dataclass
class ImageStore:
    """A dataset's stored images: ``pixels`` uint8 [N, S, S] (memory-mapped), ``index`` (image_id, row);
    ``digest``: sha256 of the pixel bytes (``pixels_digest``)."""

    pixels: np.ndarray
    index: pd.DataFrame
    rejects: pd.DataFrame
    recorded_digest: str | None = None  # index.parquet's pixels_sha256; None for a store written before it

    @classmethod
    def open(cls, directory: str | Path) -> "ImageStore":
        d = Path(directory)
        if not (d / "pixels.npy").exists():
            raise FileNotFoundError(f"{d}: no pixels.npy (run the images stage)")
        pixels = np.load(d / "pixels.npy", mmap_mode="r")
        index = read_table(d / "index.parquet", INDEX_SCHEMA)
        if len(index) != len(pixels) or not np.array_equal(index["row"].to_numpy(), np.arange(len(pixels))):
            raise ValueError(f"{d}: index.parquet ({len(index)} rows) does not match pixels.npy {pixels.shape}")
        return cls(pixels, index, read_table(d / "rejects.parquet", IMAGE_REJECTS_SCHEMA),
                   table_metadata(d / "index.parquet").get(DIGEST_KEY))

    @property
    def digest(self) -> str:
        """sha256 (hex) of the pixel bytes: the one the images stage recorded, or (a store written before it
        recorded one) computed from the pixels on first use and kept."""
        if self.recorded_digest is None:
            self.recorded_digest = pixels_digest(self.pixels)
        return self.recorded_digest

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
