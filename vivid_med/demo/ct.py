"""Synthetic CT for the demo, written in the real layouts: LIDC-IDRI (DICOM series + readers' XML) and
OrganAMNIST (MedMNIST .npz + NIfTI image/label-map pairs). Everything is drawn from ``rng``: same seed,
same bytes. The images are simple phantoms (ellipses in Hounsfield units), not anatomy.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from vivid_med.sources.ct import ORGAN_CLASSES, organ_crop, ras_to_display
from vivid_med.sources.lidc import CHARACTERISTICS, NS  # the readers' XML format the demo writes

FOV_MM = 340.0          # chest field of view (LIDC: 300-400 mm)
THICKNESS_MM = 2.5      # slice spacing
SUB = 3                 # sub-pixel samples per axis for partial-volume nodule edges
# kind -> (probability, diameter mm range, true malignancy score)
NODULE_KINDS = {"benign": (0.4, (4.0, 10.0), 1.6), "indeterminate": (0.2, (7.0, 14.0), 3.0),
                "malignant": (0.4, (12.0, 26.0), 4.4)}


def _ellipse(shape: tuple[int, int], centre, semi, angle: float = 0.0) -> np.ndarray:
    """Boolean [H, W] ellipse; centre/semi in pixels (row, col), angle in degrees."""
    r, c = np.ogrid[:shape[0], :shape[1]]
    dr, dc = r - centre[0], c - centre[1]
    t = np.deg2rad(angle)
    u, v = dr * np.cos(t) + dc * np.sin(t), -dr * np.sin(t) + dc * np.cos(t)
    return (u / max(semi[0], 1e-3)) ** 2 + (v / max(semi[1], 1e-3)) ** 2 <= 1


# ---------------------------------------------------------------- LIDC
def _chest(m: int, body: dict) -> np.ndarray:
    """The static anatomy of one patient's axial chest slice in HU, float32 [m, m]
    (rows anterior->posterior, cols patient right->left)."""
    hu = np.full((m, m), -1000.0, np.float32)
    c = m / 2
    hu[_ellipse(hu.shape, (c, c), (body["ap"] * m, body["lr"] * m))] = -100.0        # fat
    hu[_ellipse(hu.shape, (c, c), (body["ap"] * m - 3, body["lr"] * m - 3))] = 40.0   # muscle
    for side in (-1, 1):
        hu[_ellipse(hu.shape, (c - 0.02 * m, c + side * 0.2 * m), (0.24 * m, 0.15 * m))] = -850.0
    hu[_ellipse(hu.shape, (c - 0.06 * m, c + 0.03 * m), (0.1 * m, 0.09 * m), 20)] = 45.0  # mediastinum
    hu[_ellipse(hu.shape, (c + 0.25 * m, c), (0.05 * m, 0.05 * m))] = 500.0             # spine
    for a in np.linspace(0.3, 2 * np.pi - 0.3, 14):                                       # ribs
        hu[_ellipse(hu.shape, (c + 0.9 * body["ap"] * m * np.cos(a), c + 0.92 * body["lr"] * m * np.sin(a)),
                    (0.012 * m + 0.6, 0.012 * m + 0.6))] = 650.0
    return hu


def _add_vessels(hu: np.ndarray, vessels: np.ndarray, k: int) -> None:
    """Vessels: tubes through the lungs, one small disk per tube on slice k (in place)."""
    lung = hu < -800
    for r0, c0, dr, dc, rad in vessels:
        r, c = r0 + dr * k, c0 + dc * k
        b = int(rad) + 2
        rs, cs = max(int(r) - b, 0), max(int(c) - b, 0)
        re, ce = min(int(r) + b + 1, hu.shape[0]), min(int(c) + b + 1, hu.shape[1])
        if re <= rs or ce <= cs:
            continue
        disk = _ellipse((re - rs, ce - cs), (r - rs, c - cs), (rad, rad)) & lung[rs:re, cs:ce]
        hu[rs:re, cs:ce][disk] = 20.0


def _nodule_fraction(nod: dict, k: int, m: int, spacing: float, scale: float = 1.0):
    """Partial-volume occupancy of one nodule on slice k: (row0, col0, float [h, w]) or None."""
    dz = (k - nod["z"]) * THICKNESS_MM
    radius = nod["d"] / 2 * scale
    if abs(dz) >= radius:
        return None
    r_mm = np.sqrt(radius ** 2 - dz ** 2)
    reach = int(np.ceil(r_mm * (1 + nod["spike"]) / spacing)) + 1
    r0, c0 = int(nod["row"]) - reach, int(nod["col"]) - reach
    g = (np.arange(2 * reach * SUB) + 0.5) / SUB
    rr, cc = np.meshgrid(r0 + g - nod["row"], c0 + g - nod["col"], indexing="ij")
    dist, theta = np.hypot(rr, cc) * spacing, np.arctan2(rr, cc)
    edge = 1 + nod["lob"] * np.sin(nod["lob_k"] * theta + nod["phase"])
    for t in nod["spikes"]:
        edge += nod["spike"] * np.clip(1 - np.abs(np.angle(np.exp(1j * (theta - t)))) / 0.12, 0, None)
    inside = (dist < r_mm * edge).astype(np.float32)
    frac = inside.reshape(2 * reach, SUB, 2 * reach, SUB).mean((1, 3))
    return r0, c0, frac


def _overlap(shape: tuple[int, ...], r0: int, c0: int, h: int, w: int):
    """(destination, source) slices of an [h, w] patch placed at (r0, c0), clipped to ``shape``."""
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + h, shape[0]), min(c0 + w, shape[1])
    return (slice(rs, re), slice(cs, ce)), (slice(rs - r0, re - r0), slice(cs - c0, ce - c0))


def _paste(hu: np.ndarray, r0: int, c0: int, frac: np.ndarray, value: float) -> None:
    """Blend ``value`` into ``hu`` with partial-volume weights ``frac`` placed at (r0, c0)."""
    dst, src = _overlap(hu.shape, r0, c0, *frac.shape)
    hu[dst] = hu[dst] * (1 - frac[src]) + value * frac[src]


def _sample_nodules(rng: np.random.Generator, m: int, slices: int, spacing: float) -> list[dict]:
    kinds = list(NODULE_KINDS)
    out: list[dict] = []
    while len(out) < int(rng.integers(1, 4)):
        kind = kinds[rng.choice(3, p=[NODULE_KINDS[k][0] for k in kinds])]
        d = float(rng.uniform(*NODULE_KINDS[kind][1]))
        half_slices = d / 2 / THICKNESS_MM
        if slices < 2 * half_slices + 3:
            d = (slices - 3) * THICKNESS_MM
            half_slices = d / 2 / THICKNESS_MM
        side = rng.choice([-1, 1])
        ang, rad = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 1)) * 0.55
        nod = dict(kind=kind, d=d, z=float(rng.uniform(half_slices + 1, slices - 2 - half_slices)),
                   row=m / 2 - 0.02 * m + rad * 0.24 * m * np.sin(ang),
                   col=m / 2 + side * 0.2 * m + rad * 0.15 * m * np.cos(ang),
                   hu=float(rng.choice([30.0, 400.0]) if kind == "benign" else rng.normal(35, 10)),
                   lob=float(rng.uniform(0.15, 0.3) if kind == "malignant" else rng.uniform(0, 0.05)),
                   lob_k=int(rng.integers(3, 6)), phase=float(rng.uniform(0, 2 * np.pi)),
                   spike=float(rng.uniform(0.6, 1.0) if kind == "malignant" else 0.0),
                   spikes=rng.uniform(-np.pi, np.pi, int(rng.integers(4, 9))).tolist())
        far = all(np.hypot((nod["row"] - o["row"]) * spacing, (nod["col"] - o["col"]) * spacing) > (d + o["d"]) * 1.5
                  for o in out)
        if far:
            out.append(nod)
    return out


def _ratings(nod: dict, rng: np.random.Generator) -> dict[str, int]:
    """One reader's nine LIDC characteristics, noisy around the nodule's truth."""
    mal = nod["kind"] == "malignant"

    def score(mean: float, sd: float = 0.7, lo: int = 1, hi: int = 5) -> int:
        return int(np.clip(np.rint(mean + rng.normal(0, sd)), lo, hi))

    return {"subtlety": score(2 + nod["d"] / 8), "internalStructure": 1,
            "calcification": 3 if nod["hu"] > 200 else 6, "sphericity": score(3 if mal else 4.5),
            "margin": score(2.2 if mal else 4.5), "lobulation": score(1 + 12 * nod["lob"]),
            "spiculation": score(1 + 4 * nod["spike"]), "texture": score(4.8, 0.4),
            "malignancy": score(NODULE_KINDS[nod["kind"]][2], 0.8)}


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask as (x=col, y=row) int [P, 2], ordered by angle."""
    p = np.pad(mask, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    r, c = np.nonzero(mask & ~inner)
    order = np.argsort(np.arctan2(r - r.mean(), c - c.mean()))
    return np.stack([c[order], r[order]], 1)


def _sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _read_message(study: str, series: str, nodules: list[dict], z: np.ndarray, sops: list[str], m: int,
                  spacing: float, rng: np.random.Generator) -> ET.ElementTree:
    """The readers' XML (LidcReadMessage, namespace http://www.nih.gov) for one series."""
    ET.register_namespace("", NS)
    root = ET.Element(f"{{{NS}}}LidcReadMessage", uid=generate_uid(entropy_srcs=[series, "xml"]))
    head = _sub(root, "ResponseHeader")
    for tag, text in (("Version", "1.8.1"), ("TaskDescription", "Second unblinded read"),
                      ("SeriesInstanceUid", series), ("ResponseDescription", "1 - Reading complete"),
                      ("StudyInstanceUID", study)):
        _sub(head, tag, text)
    n_readers = 4 if rng.random() < 0.85 else 3
    for reader in range(n_readers):
        session = _sub(root, "readingSession")
        _sub(session, "annotationVersion", "3.12")
        _sub(session, "servicingRadiologistID", f"anon-{reader}")
        for j, nod in enumerate(nodules):
            if rng.random() > (0.95 if nod["kind"] == "malignant" else 0.8):
                continue
            el = _sub(session, "unblindedReadNodule")
            _sub(el, "noduleID", f"R{reader}N{j}")
            chars = _sub(el, "characteristics")
            ratings = _ratings(nod, rng)
            for name in CHARACTERISTICS:
                _sub(chars, name, ratings[name])
            jit = dict(nod, row=nod["row"] + rng.normal(0, 0.5), col=nod["col"] + rng.normal(0, 0.5))
            scale = float(rng.uniform(0.9, 1.15))
            peak = _nodule_fraction(jit, int(round(nod["z"])), m, spacing, scale)
            cut = min(0.5, 0.6 * float(peak[2].max())) if peak is not None else 0.5  # tiny: outline the core
            for k in range(len(z)):
                occ = _nodule_fraction(jit, k, m, spacing, scale)
                if occ is None:
                    continue
                mask = np.zeros((m, m), bool)
                r0, c0, frac = occ
                dst, src = _overlap(mask.shape, r0, c0, *frac.shape)
                mask[dst] = frac[src] >= cut
                if not mask.any():
                    continue
                roi = _sub(el, "roi")
                _sub(roi, "imageZposition", f"{z[k]:.2f}")
                _sub(roi, "imageSOP_UID", sops[k])
                _sub(roi, "inclusion", "TRUE")
                for x, y in _boundary(mask):
                    em = _sub(roi, "edgeMap")
                    _sub(em, "xCoord", x)
                    _sub(em, "yCoord", y)
        if rng.random() < 0.3:  # a non-nodule mark, as readers make
            k = int(rng.integers(len(z)))
            nn = _sub(session, "nonNodule")
            _sub(nn, "nonNoduleID", f"R{reader}X")
            _sub(nn, "imageZposition", f"{z[k]:.2f}")
            _sub(nn, "imageSOP_UID", sops[k])
            locus = _sub(nn, "locus")
            _sub(locus, "xCoord", int(m * 0.3))
            _sub(locus, "yCoord", int(m * 0.5))
    ET.indent(root)
    return ET.ElementTree(root)


def _series_header(uids: dict, patient: str, spacing: float, m: int) -> Dataset:
    """The tags shared by every slice of one CT series (int16 stored values, HU = stored - 1024)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.PatientID = ds.PatientName = patient
    ds.Modality, ds.Manufacturer, ds.ImageType = "CT", "vivid-med synthetic", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = "20000101"
    ds.SeriesNumber, ds.KVP = 3000, 120
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = THICKNESS_MM
    ds.PixelSpacing = [round(spacing, 6)] * 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = m
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    return ds


def _write_slice(ds: Dataset, path: Path, hu: np.ndarray, k: int, z: float, sop: str) -> None:
    """Write slice k of the series whose shared tags are ``ds``."""
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [-FOV_MM / 2, -FOV_MM / 2, round(z, 2)]
    ds.SliceLocation = round(z, 2)
    ds.PixelData = np.clip(np.rint(hu) + 1024, -32768, 32767).astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_lidc(out_dir: Path, cfg: dict, rng: np.random.Generator) -> dict:
    """Write ``cfg['n_patients']`` LIDC-IDRI patients into ``out_dir`` (the layout's root) + truth.csv.

    cfg: n_patients, slices, matrix. Returns counts."""
    out_dir = Path(out_dir)
    m, n_slices = int(cfg["matrix"]), int(cfg["slices"])
    if n_slices < 8 or m < 32:
        raise ValueError(f"lidc demo: slices={n_slices}, matrix={m}; need slices >= 8 and matrix >= 32")
    spacing = FOV_MM / m
    token = str(rng.integers(2 ** 63))
    truth, counts = [], {"patients": 0, "slices": 0, "nodules": 0, **{k: 0 for k in NODULE_KINDS}}
    for p in range(int(cfg["n_patients"])):
        patient = f"LIDC-IDRI-{p + 1:04d}"
        uid = {key: generate_uid(entropy_srcs=[token, patient, key]) for key in ("study", "series", "frame")}
        series_dir = out_dir / patient / uid["study"] / uid["series"]
        series_dir.mkdir(parents=True, exist_ok=True)
        body = dict(ap=rng.uniform(0.3, 0.36), lr=rng.uniform(0.42, 0.47))
        vessels = np.column_stack([rng.normal(m / 2, 0.15 * m, 40), rng.normal(m / 2, 0.25 * m, 40),
                                   rng.normal(0, 0.4, 40), rng.normal(0, 0.4, 40), rng.uniform(0.4, 1.2, 40)])
        nodules = _sample_nodules(rng, m, n_slices, spacing)
        z = np.round(-40.0 - THICKNESS_MM * np.arange(n_slices), 2)   # InstanceNumber 1 at the top
        anatomy = _chest(m, body)
        ds = _series_header(uid, patient, spacing, m)
        sops = [generate_uid(entropy_srcs=[token, patient, "sop", str(k)]) for k in range(n_slices)]
        for k in range(n_slices):
            hu = anatomy.copy()
            _add_vessels(hu, vessels, k)
            for nod in nodules:
                occ = _nodule_fraction(nod, k, m, spacing)
                if occ is not None:
                    _paste(hu, *occ, nod["hu"])
            hu += rng.normal(0, 20, hu.shape).astype(np.float32)
            _write_slice(ds, series_dir / f"{k + 1:06d}.dcm", hu, k, float(z[k]), sops[k])
        xml = _read_message(uid["study"], uid["series"], nodules, z, sops, m, spacing, rng)
        xml.write(series_dir / f"{p + 1:03d}.xml", encoding="UTF-8", xml_declaration=True)
        for nod in nodules:
            truth.append(dict(patient_id=patient, kind=nod["kind"], diameter_mm=round(nod["d"], 2),
                              x=round(nod["col"], 2), y=round(nod["row"], 2), z=float(z[int(round(nod["z"]))])))
            counts[nod["kind"]] += 1
        counts["patients"] += 1
        counts["slices"] += n_slices
        counts["nodules"] += len(nodules)
    with open(out_dir / "truth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(truth[0]))
        w.writeheader()
        w.writerows(truth)
    return counts


# ---------------------------------------------------------------- abdominal organs (OrganAMNIST)
# organ -> (z from, z to (fraction of the body's height, 0 = feet), row, col, semi rows, semi cols,
# angle, HU). Display orientation: rows anterior->posterior, cols patient right->left.
ORGANS: dict[str, tuple[float, ...]] = {
    "lung-right": (0.76, 1.04, 0.50, 0.28, 0.26, 0.17, 0, -850),
    "lung-left": (0.76, 1.04, 0.50, 0.72, 0.26, 0.17, 0, -850),
    "heart": (0.80, 0.97, 0.40, 0.55, 0.17, 0.20, 30, 130),
    "liver": (0.45, 0.78, 0.45, 0.30, 0.24, 0.20, 20, 110),
    "spleen": (0.50, 0.70, 0.58, 0.76, 0.12, 0.07, 40, 125),
    "pancreas": (0.47, 0.55, 0.50, 0.55, 0.045, 0.17, 10, 90),
    "kidney-right": (0.33, 0.51, 0.62, 0.30, 0.11, 0.065, 60, 180),
    "kidney-left": (0.36, 0.54, 0.62, 0.70, 0.11, 0.065, -60, 180),
    "bladder": (0.04, 0.22, 0.38, 0.50, 0.10, 0.12, 0, 10),
    "femur-right": (-0.02, 0.22, 0.55, 0.27, 0.075, 0.075, 0, 700),
    "femur-left": (-0.02, 0.22, 0.55, 0.73, 0.075, 0.075, 0, 700),
}


def _abdomen_case(rng: np.random.Generator) -> dict:
    """Per-case jitter of every organ's position, size, extent and density."""
    return {name: (z0 + rng.normal(0, 0.015), z1 + rng.normal(0, 0.015), r + rng.normal(0, 0.02),
                   c + rng.normal(0, 0.02), sr * rng.uniform(0.85, 1.15), sc * rng.uniform(0.85, 1.15),
                   a + rng.normal(0, 8), h + rng.normal(0, 8))
            for name, (z0, z1, r, c, sr, sc, a, h) in ORGANS.items()}


def _abdomen_slice(case: dict, zf: float, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Axial slice at height ``zf`` in [0, 1]: (HU float32 [m, m], labels uint8 [m, m], 0 = none)."""
    hu = np.full((m, m), -1000.0, np.float32)
    hu[_ellipse(hu.shape, (m / 2, m / 2), (0.36 * m, 0.46 * m))] = -100.0
    hu[_ellipse(hu.shape, (m / 2, m / 2), (0.33 * m, 0.43 * m))] = 40.0
    hu[_ellipse(hu.shape, (0.75 * m, m / 2), (0.06 * m, 0.06 * m))] = 450.0
    lab = np.zeros((m, m), np.uint8)
    for name, (z0, z1, r, c, sr, sc, a, h) in case.items():
        t = (zf - (z0 + z1) / 2) / ((z1 - z0) / 2)
        if abs(t) >= 1:
            continue
        s = np.sqrt(1 - t * t)
        organ = _ellipse(hu.shape, (r * m, c * m), (sr * s * m, sc * s * m), a)
        hu[organ] = h
        lab[organ] = ORGAN_CLASSES.index(name) + 1
        if name.startswith("femur"):  # marrow inside the cortex
            hu[_ellipse(hu.shape, (r * m, c * m), (0.6 * sr * s * m, 0.6 * sc * s * m))] = 300.0
    return hu + rng.normal(0, 12, hu.shape).astype(np.float32), lab


def write_organ(out_dir: Path, cfg: dict, rng: np.random.Generator) -> dict:
    """Write ``out_dir/organamnist.npz`` (MedMNIST keys; n_per_class crops per organ, split 60/10/30 per
    class) and ``out_dir/nifti/case_XXX_{image,label}.nii.gz``. cfg: n_per_class, image_size, n_nifti_cases."""
    out_dir = Path(out_dir)
    size, n = int(cfg["image_size"]), int(cfg["n_per_class"])
    if n < 3:
        raise ValueError(f"organ demo: n_per_class={n}; need >= 3 (one crop per split at least)")
    m = 2 * size
    parts: dict[str, list] = {f"{s}_{k}": [] for s in ("train", "val", "test") for k in ("images", "labels")}
    for label, name in enumerate(ORGAN_CLASSES):
        crops = []
        while len(crops) < n:
            case = _abdomen_case(rng)
            z0, z1 = case[name][:2]
            hu, lab = _abdomen_slice(case, float(rng.uniform(z0 + 0.15 * (z1 - z0), z1 - 0.15 * (z1 - z0))), m, rng)
            if (lab == label + 1).sum() >= 12:
                crops.append(organ_crop(hu, lab == label + 1, size))
        n_train, n_val = round(0.6 * n), max(1, round(0.1 * n))
        for split, part in (("train", crops[:n_train]), ("val", crops[n_train:n_train + n_val]),
                            ("test", crops[n_train + n_val:])):
            parts[f"{split}_images"] += part
            parts[f"{split}_labels"] += [label] * len(part)
    arrays = {}
    for split in ("train", "val", "test"):
        order = rng.permutation(len(parts[f"{split}_images"]))
        arrays[f"{split}_images"] = np.stack(parts[f"{split}_images"])[order].astype(np.uint8)
        arrays[f"{split}_labels"] = np.asarray(parts[f"{split}_labels"], np.uint8)[order, None]
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "organamnist.npz", **arrays)
    nifti = out_dir / "nifti"
    nifti.mkdir(exist_ok=True)
    n_z, z_mm = 40, 5.0
    spacing = 400.0 / m
    affine = np.diag([spacing, spacing, z_mm, 1.0])
    affine[:3, 3] = [-200.0, -200.0, -n_z * z_mm / 2]
    for i in range(int(cfg["n_nifti_cases"])):
        case = _abdomen_case(rng)
        slices = [_abdomen_slice(case, k / (n_z - 1), m, rng) for k in range(n_z)]
        hu = np.stack([ras_to_display(s[0]) for s in slices], -1)
        lab = np.stack([ras_to_display(s[1]) for s in slices], -1)
        for kind, data in (("image", np.rint(hu).astype(np.int16)), ("label", lab.astype(np.uint8))):
            img = nib.Nifti1Image(data, affine)
            img.header.set_xyzt_units("mm")
            nib.save(img, nifti / f"case_{i:03d}_{kind}.nii.gz")
    return {"npz_" + s: len(arrays[f"{s}_labels"]) for s in ("train", "val", "test")} | {
        "nifti_cases": int(cfg["n_nifti_cases"])}
