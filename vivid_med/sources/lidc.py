"""LIDC-IDRI (TCIA) nodule malignancy: DICOM CT series + the readers' XML -> middle-slice nodule crops (kind ``lidc``).

Layout read (the TCIA download; folder names are not trusted, UIDs are read from the files)::

    <root>/LIDC-IDRI-0001/<study folder>/<series folder>/*.dcm + one LidcReadMessage *.xml

Rules (method.md section 5): every reader's ``unblindedReadNodule`` with characteristics (the >= 3 mm
class) is one annotation; annotations of the readers are clustered into physical nodules by centroid
distance; malignancy by the ``mean`` rule (mean <= 2 benign, >= 4 malignant, in between dropped) or the
``median`` rule (median < 3 benign, > 3 malignant); the middle slice of a nodule is the median z over all
its readers' ROIs; the crop is ``crop_mm`` wide around the nodule, lung-windowed, resized to ``crop_size``;
patients are split train/val/test by ``fractions`` with a seeded permutation.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pydicom

from vivid_med.params import NonNegativeInt, PositiveFloat, PositiveInt
from vivid_med.sources.base import ImageSet
from vivid_med.sources.ct import crop_resize, patient_split_map, window_hu
from vivid_med.sources.dataset import DatasetOptions, HuWindow, ImageSetSource, SplitFractions, register
from vivid_med.ums import UMSRecord, ct_record, provenance

NS = "http://www.nih.gov"
CHARACTERISTICS: tuple[str, ...] = (
    "subtlety", "internalStructure", "calcification", "sphericity", "margin",
    "lobulation", "spiculation", "texture", "malignancy",
)
CLASS_NAMES: tuple[str, str] = ("benign", "malignant")
REJECT_COLUMNS: tuple[str, ...] = ("source_file", "row", "reason", "detail")


# ---------------------------------------------------------------- XML
@dataclass
class Annotation:
    """One reader's outline of one nodule: ROI slices (z mm) and contour points (col, row pixels)."""

    xml: str
    reader: int
    nodule_id: str
    scores: dict[str, int]
    z: np.ndarray          # float [R] one z per ROI
    points: list[np.ndarray]  # per ROI: float [P, 2] (x=col, y=row)

    def centroid(self, spacing: float) -> np.ndarray:
        """(x, y, z) in mm: mean of all contour points, scaled by the pixel spacing."""
        xy = np.concatenate(self.points).mean(0) * spacing
        return np.array([xy[0], xy[1], self.z.mean()])


class LidcXmlError(ValueError):
    """A readers' XML that cannot be used (names the file)."""


class NotCtReadError(LidcXmlError):
    """An XML that is not a CT read (LIDC's chest radiograph folders hold IdriReadMessage files)."""


def _text(el: ET.Element, tag: str, where: str) -> str:
    child = el.find(f"{{{NS}}}{tag}")
    if child is None or child.text is None or not child.text.strip():
        raise LidcXmlError(f"{where}: missing <{tag}>")
    return child.text.strip()


def parse_read_message(path: Path) -> tuple[str, list[Annotation], list[dict]]:
    """Parse one LidcReadMessage XML -> (SeriesInstanceUid, annotations, skipped rows).

    Small nodules (no characteristics) and nonNodule marks are skipped with a row each; a file that is
    not well-formed or not a LidcReadMessage raises LidcXmlError naming it.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise LidcXmlError(f"{path}: malformed XML ({e})") from e
    if root.tag != f"{{{NS}}}LidcReadMessage":
        raise NotCtReadError(f"{path}: root <{root.tag}> is not {{{NS}}}LidcReadMessage (not a CT read)")
    header = root.find(f"{{{NS}}}ResponseHeader")
    if header is None:
        raise LidcXmlError(f"{path}: missing <ResponseHeader>")
    series_uid = _text(header, "SeriesInstanceUid", str(path))
    anns: list[Annotation] = []
    skipped: list[dict] = []
    for reader, session in enumerate(root.iter(f"{{{NS}}}readingSession")):
        for el in session.findall(f"{{{NS}}}unblindedReadNodule"):
            where = f"{path} reader {reader}"
            nid = _text(el, "noduleID", where)
            row = f"reader {reader} nodule {nid}"
            chars = el.find(f"{{{NS}}}characteristics")
            if chars is None or not len(chars):
                skipped.append(dict(source_file=str(path), row=row, reason="small_nodule",
                                    detail="no characteristics (< 3 mm class)"))
                continue
            raw = {c: (chars.findtext(f"{{{NS}}}{c}") or "").strip() for c in CHARACTERISTICS}
            if not all(v.isdigit() and v != "0" for v in raw.values()):
                skipped.append(dict(source_file=str(path), row=row, reason="incomplete_characteristics",
                                    detail=f"blank, zero or non-integer rating in {raw}"))
                continue
            scores = {c: int(v) for c, v in raw.items()}
            zs, pts = [], []
            for roi in el.findall(f"{{{NS}}}roi"):
                if _text(roi, "inclusion", where).upper() != "TRUE":
                    continue  # exclusion contours cut holes; the centroid uses inclusions only
                try:
                    xy = [(float(_text(e, "xCoord", where)), float(_text(e, "yCoord", where)))
                          for e in roi.findall(f"{{{NS}}}edgeMap")]
                    z = float(_text(roi, "imageZposition", where))
                except ValueError as e:
                    raise LidcXmlError(f"{path} {row}: bad number ({e})") from e
                if xy:
                    zs.append(z)
                    pts.append(np.asarray(xy, np.float64))
            if not zs:
                skipped.append(dict(source_file=str(path), row=row, reason="no_roi", detail="no inclusion ROI"))
                continue
            anns.append(Annotation(str(path), reader, nid, scores, np.asarray(zs), pts))
    return series_uid, anns, skipped


def cluster_annotations(anns: list[Annotation], spacing: float, tol_mm: float) -> list[list[Annotation]]:
    """Group annotations whose centroids lie within ``tol_mm`` (single linkage) into physical nodules."""
    if not anns:
        return []
    c = np.stack([a.centroid(spacing) for a in anns])
    near = np.linalg.norm(c[:, None] - c[None], axis=-1) <= tol_mm
    label = -np.ones(len(anns), int)
    for i in range(len(anns)):
        if label[i] < 0:
            stack, label[i] = [i], i
            while stack:
                j = stack.pop()
                for k in np.flatnonzero(near[j] & (label < 0)):
                    label[k] = i
                    stack.append(k)
    return [[anns[i] for i in np.flatnonzero(label == g)] for g in sorted(set(label))]


def malignancy_label(scores: list[int], rule: str) -> int | None:
    """1 malignant, 0 benign, None dropped (indeterminate) under the ``mean`` or ``median`` rule."""
    if rule == "mean":
        m = float(np.mean(scores))
        return 0 if m <= 2 else 1 if m >= 4 else None
    if rule == "median":
        m = float(np.median(scores))
        return 0 if m < 3 else 1 if m > 3 else None
    raise ValueError(f"unknown malignancy rule {rule!r}; expected 'mean' or 'median'")


# ---------------------------------------------------------------- DICOM
@dataclass
class Series:
    """A CT series' slices sorted by z (headers only; pixels are read on demand)."""

    files: list[Path]
    z: np.ndarray  # float [S] ascending
    series_uid: str
    patient_id: str
    spacing: float  # mm per pixel (rows == cols assumed, as in LIDC)
    rows: int
    cols: int

    def hu(self, k: int) -> np.ndarray:
        """Slice k in Hounsfield units: float32 [rows, cols]."""
        ds = pydicom.dcmread(self.files[k])
        slope, icpt = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
        return ds.pixel_array.astype(np.float32) * slope + icpt


def read_series(folder: Path) -> Series:
    """Read a series' headers, sort by ImagePositionPatient z; ValueError naming the folder if slices are
    missing (a z step over 1.5x the median step, or a gap in InstanceNumber) or the series is mixed."""
    heads = []
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        heads.append((float(ds.ImagePositionPatient[2]), int(ds.InstanceNumber), f, ds))
    if len(heads) < 2:
        raise ValueError(f"{folder}: {len(heads)} DICOM slice(s); a CT series needs at least 2")
    heads.sort(key=lambda h: (h[0], h[1]))
    uniq = {}
    for h in heads:  # duplicate z: keep the lower InstanceNumber (as pylidc does)
        uniq.setdefault(h[0], h)
    heads = list(uniq.values())
    ds0 = heads[0][3]
    uids = {str(h[3].SeriesInstanceUID) for h in heads}
    if len(uids) > 1:
        raise ValueError(f"{folder}: slices of {len(uids)} series mixed in one folder")
    z = np.array([h[0] for h in heads])
    step = np.diff(z)
    if (step > 1.5 * np.median(step)).any():
        k = int(np.argmax(step))
        raise ValueError(f"{folder}: missing slice(s): z jumps {z[k]:.2f} -> {z[k + 1]:.2f} mm "
                         f"(median step {np.median(step):.2f})")
    inst = sorted(h[1] for h in heads)
    if inst[-1] - inst[0] + 1 != len(inst):
        raise ValueError(f"{folder}: missing slice(s): InstanceNumber {inst[0]}..{inst[-1]} but {len(inst)} files")
    return Series([h[2] for h in heads], z, str(ds0.SeriesInstanceUID), str(ds0.PatientID),
                  float(ds0.PixelSpacing[0]), int(ds0.Rows), int(ds0.Columns))


# ---------------------------------------------------------------- the dataset
@dataclass
class LidcData:
    """images: ImageSet (one middle-slice crop per kept nodule); nodules: one row per physical nodule
    (kept or dropped); rejects: source_file, row, reason, detail."""

    images: ImageSet
    nodules: pd.DataFrame
    rejects: pd.DataFrame


def _check_inside(a: Annotation, s: Series) -> str | None:
    ztol = 0.25 * float(np.median(np.diff(s.z)))
    off = [z for z in a.z if np.abs(s.z - z).min() > ztol]
    if off:
        return f"ROI z {off[0]:.2f} mm is not a slice of the series (z {s.z[0]:.2f}..{s.z[-1]:.2f})"
    p = np.concatenate(a.points)
    if (p < 0).any() or (p[:, 0] >= s.cols).any() or (p[:, 1] >= s.rows).any():
        return f"contour outside the {s.rows}x{s.cols} matrix"
    return None


def _series_nodules(folder: Path, xml: Path, rule: str, tol_mm: float, min_readers: int,
                    crop_mm: float, crop_size: int, window: tuple[float, float]):
    """Nodule rows, crops and reject rows of one series folder."""
    series = read_series(folder)
    uid, anns, rejects = parse_read_message(xml)
    if uid != series.series_uid:
        raise LidcXmlError(f"{xml}: SeriesInstanceUid {uid} != the DICOM series {series.series_uid}")
    kept = []
    for a in anns:
        why = _check_inside(a, series)
        if why:
            rejects.append(dict(source_file=str(xml), row=f"reader {a.reader} nodule {a.nodule_id}",
                                reason="outside_volume", detail=why))
        else:
            kept.append(a)
    rows, crops = [], []
    for n, group in enumerate(cluster_annotations(kept, series.spacing, tol_mm)):
        by_reader: dict[int, Annotation] = {}
        centre = np.mean([a.centroid(series.spacing) for a in group], 0)
        for a in sorted(group, key=lambda a: np.linalg.norm(a.centroid(series.spacing) - centre)):
            if a.reader in by_reader:
                rejects.append(dict(source_file=str(xml), row=f"reader {a.reader} nodule {a.nodule_id}",
                                    reason="duplicate_reader", detail=f"reader already outlined nodule {n}"))
            else:
                by_reader[a.reader] = a
        scores = [a.scores["malignancy"] for a in by_reader.values()]
        label = malignancy_label(scores, rule) if len(by_reader) >= min_readers else None
        z_mid = float(np.median(np.concatenate([a.z for a in by_reader.values()])))
        k = int(np.argmin(np.abs(series.z - z_mid)))
        pts = [p for a in by_reader.values() for z, p in zip(a.z, a.points) if abs(z - series.z[k]) < 1e-3]
        xy = np.concatenate(pts).mean(0) if pts else centre[:2] / series.spacing
        rows.append(dict(patient_id=series.patient_id, series_uid=series.series_uid, nodule=n,
                         n_readers=len(by_reader), malignancy=scores, malignancy_mean=float(np.mean(scores)),
                         label=label, slice_z=float(series.z[k]), x=float(xy[0]), y=float(xy[1]),
                         series_dir=str(folder), xml=str(xml)))
        if label is not None:
            hu = crop_resize(series.hu(k), (xy[1], xy[0]), crop_mm / 2 / series.spacing, crop_size, -1000.0)
            crops.append(window_hu(hu, *window))
    return rows, crops, rejects


def find_series(root: Path) -> list[tuple[Path, Path]]:
    """(series folder, readers' XML) for every folder under ``root`` holding .dcm files and an XML."""
    out = []
    for xml in sorted(root.rglob("*.xml")):
        if any(xml.parent.glob("*.dcm")):
            out.append((xml.parent, xml))
    return out


@register("lidc")
class LidcIdri(ImageSetSource):
    """An LIDC-IDRI download -> one middle-slice crop per kept nodule (uint8 [N, crop_size, crop_size], labels
    0 benign / 1 malignant, patient = PatientID, split by patient with ``fractions`` and ``seed``)."""

    class Options(DatasetOptions):
        rule: Literal["mean", "median"] = "mean"
        tol_mm: PositiveFloat = 10.0
        min_readers: PositiveInt = 1
        crop_mm: PositiveFloat = 48.0
        crop_size: PositiveInt = 64
        window: HuWindow = [1500.0, -600.0]
        fractions: SplitFractions = [0.7, 0.2, 0.1]
        seed: NonNegativeInt = 0
        progress: bool = True

    def image_set(self) -> ImageSet:
        return self.read().images

    def read(self) -> LidcData:
        """The crops with the nodule table (kept and dropped nodules) and the rejects."""
        from tqdm import tqdm

        o, root = self.options, self.root
        pairs = find_series(root)
        if not pairs:
            raise FileNotFoundError(f"{root}: no series folder with *.dcm and a readers' *.xml (LIDC-IDRI layout)")
        rows, crops, rejects = [], [], []
        for folder, xml in tqdm(pairs, desc="lidc series", disable=not o.progress):
            try:
                r, c, rej = _series_nodules(folder, xml, o.rule, o.tol_mm, o.min_readers, o.crop_mm, o.crop_size,
                                            tuple(o.window))
            except LidcXmlError as e:
                reason = "not_ct_read" if isinstance(e, NotCtReadError) else "bad_xml"
                rejects.append(dict(source_file=str(xml), row="", reason=reason, detail=str(e)))
                continue
            except (ValueError, AttributeError, KeyError) as e:  # AttributeError: a DICOM without a needed tag
                rejects.append(dict(source_file=str(folder), row="", reason="bad_series", detail=str(e)))
                continue
            rows += r
            crops += c
            rejects += rej
        nodules = pd.DataFrame(rows, columns=["patient_id", "series_uid", "nodule", "n_readers", "malignancy",
                                              "malignancy_mean", "label", "slice_z", "x", "y", "series_dir", "xml"])
        kept = nodules[nodules.label.notna()]
        if kept.empty:
            raise ValueError(f"{root}: no nodule kept ({len(nodules)} found, {len(rejects)} rejects)")
        split = patient_split_map(list(kept.patient_id), o.fractions, o.seed)
        pids = kept.patient_id.to_numpy(str)
        images = ImageSet("lidc", np.stack(crops), kept.label.to_numpy(np.int64), pids,
                          np.array([split[p] for p in pids]), CLASS_NAMES)
        nodules["split"] = nodules.patient_id.map(split)
        return LidcData(images, nodules, pd.DataFrame(rejects, columns=list(REJECT_COLUMNS)))


def ums_records(nodules: pd.DataFrame, rule: str = "mean") -> list[UMSRecord]:
    """One UMS record (modality CT, anatomy chest) per nodule row of ``LidcData.nodules``;
    nodule_malignancy is null where the rule dropped the nodule."""
    return [ct_record(provenance("label_table", label_file=row.xml, note=f"LIDC readers' malignancy, {rule} rule"),
                      nodule_malignancy=None if pd.isna(row.label) else CLASS_NAMES[int(row.label)])
            for row in nodules.itertuples()]
