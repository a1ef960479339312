"""Shared containers and guards of every dataset adapter: ImageSet, the patient-level split, path and leakage
guards (the one-lstat fast path of plain paths: ``plain_kind``), the demo's SYNTHETIC marker."""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from vivid_med.tables import Reason

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ImageSet:
    """A labelled image set for probes and transfer.

    images: uint8 [N, H, W]; labels: int64 [N] (single-label class index) or float32 [N, C]
    (multi-label, NaN = unlabelled); patient_ids: [N] str; splits: [N] str in SPLITS.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    splits: np.ndarray
    class_names: tuple[str, ...]
    multilabel: bool = False

    def __post_init__(self) -> None:
        n = len(self.images)
        for attr in ("labels", "patient_ids", "splits"):
            if len(getattr(self, attr)) != n:
                raise ValueError(f"{self.name}: {attr} has {len(getattr(self, attr))} rows, images has {n}")
        bad = set(np.unique(self.splits)) - set(SPLITS)
        if bad:
            raise ValueError(f"{self.name}: unknown split(s) {sorted(bad)}; expected {SPLITS}")
        check_patient_splits(self.patient_ids, self.splits, self.name)


def split_by_patient(patient_ids: pd.Series, fractions: dict[str, float], seed: int) -> pd.Series:
    """The split of each row [N] (same index), drawn per patient: a seeded permutation of the sorted patient ids.

    ``fractions`` maps split -> fraction of patients, in order (``round(f * n)`` each); the last split takes the rest.
    """
    patients = np.array(sorted(set(patient_ids)), dtype=object)
    order = np.random.default_rng(seed).permutation(len(patients))
    assigned = np.empty(len(patients), dtype=object)
    names = list(fractions)
    start = 0
    for name in names[:-1]:
        n = int(round(fractions[name] * len(patients)))
        assigned[order[start:start + n]] = name
        start += n
    assigned[order[start:]] = names[-1]
    lookup = dict(zip(patients, assigned))
    return patient_ids.map(lookup)


def check_patient_splits(patient_ids: np.ndarray, splits: np.ndarray, what: str) -> None:
    """Refuse leakage: raise ValueError if any patient occurs in more than one split."""
    pairs = {(str(p), str(s)) for p, s in zip(patient_ids, splits)}
    seen: dict[str, str] = {}
    for p, s in sorted(pairs):
        if p in seen and seen[p] != s:
            raise ValueError(f"{what}: patient {p!r} occurs in splits {seen[p]!r} and {s!r} (leakage)")
        seen[p] = s


def safe_join(root: str | Path, relative: str | Path) -> Path:
    """``root / relative``, refusing paths that escape ``root`` (absolute paths, ``..``, symlinks out)."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"image path {str(relative)!r} escapes the dataset root {str(root)!r}")
    return path


def file_inside(root: str | Path, relative: str | Path, missing: Reason) -> tuple[Path | None, Reason | None]:
    """(the resolved path, None) for a regular file under ``root`` (symlinks followed only while they stay
    inside), else (None, why): ``path_outside_root``, ``missing`` when nothing is there (a name no file can have,
    with a NUL byte or too long, included), ``not_a_file``."""
    if "\x00" in str(relative):
        return None, missing
    try:
        path = safe_join(root, relative)
    except ValueError:
        return None, Reason.PATH_OUTSIDE_ROOT
    try:
        if path.is_file():
            return path, None
        return None, Reason.NOT_A_FILE if path.exists() else missing
    except OSError:  # a name too long, a loop: nothing readable is there
        return None, missing


def is_plain(rel: str) -> bool:
    """A relative path in normal form, without '..' or a NUL byte: joined to a root it names a place under the
    root unless a symlink is on the way (``plain_kind`` finds out)."""
    return (posixpath.normpath(rel) == rel and not rel.startswith(("/", "../")) and rel not in (".", "..")
            and "\x00" not in rel)


def lstat_kind(path: str) -> str:
    """'dir', 'file' (regular), 'missing', or 'other' (a symlink, anything else, or an lstat that fails otherwise:
    a name too long, no permission)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "other"
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def plain_kind(root: str, rel: str, dirs: dict[str, str]) -> str:
    """What ``root/rel`` (``rel`` plain: ``is_plain``) is when reached through real directories only: 'file',
    'dir' or 'missing'; 'other' where a symlink, a non-directory or a failing lstat is on the way (the caller then
    resolves the path with ``safe_join``). ``dirs`` caches each directory's kind: one lstat per directory and file.
    """
    folder = posixpath.dirname(rel)
    if folder and folder not in dirs:
        up = plain_kind(root, folder, dirs)
        dirs[folder] = up if up in ("dir", "missing") else "other"
    up = dirs[folder] if folder else "dir"
    return lstat_kind(os.path.join(root, rel)) if up == "dir" else up


def read_gray(root: Path, paths: list[str], size: int) -> np.ndarray:
    """uint8 [N, size, size] from image files under ``root`` (grey, bilinear resize); names the bad file."""
    out = np.empty((len(paths), size, size), np.uint8)
    for i, rel in enumerate(tqdm(paths, desc=root.name, leave=False)):
        try:
            with Image.open(safe_join(root, rel)) as im:
                out[i] = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR))
        except OSError as e:
            raise ValueError(f"{root / rel}: cannot read image ({e})") from e
    return out


#: A file the demo writes into each dataset root it makes; its presence labels everything derived as synthetic.
SYNTHETIC_MARKER = "SYNTHETIC.md"


def is_synthetic(path: str | Path) -> bool:
    """True when ``path`` (a dataset root, or a file in one) carries the demo's SYNTHETIC marker."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (folder / SYNTHETIC_MARKER).is_file()
