"""Writers for the real dataset layouts the demo cohort imitates: MIMIC-CXR-JPG 2.0.0 and NIH ChestX-ray14.

File and column names are the official ones (MIMIC-CXR-JPG 2.0.0 on PhysioNet; NIH's Data_Entry_2017
as distributed, v2020 header). The official MIMIC tables are gzipped (``*.csv.gz``); the demo writes them
uncompressed (``*.csv``), which pandas reads the same way. Images are written with Pillow at fixed settings
(JPEG quality 95, no optimisation; PNG compress level 6, no metadata) so two runs are byte-identical.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from vivid_med.demo.cohort import Study, no_finding
from vivid_med.demo.config import FINDINGS
from vivid_med.demo.cxr import MIMIC_STYLE, NIH_STYLE, render_cxr
from vivid_med.demo.reports import write_report
from vivid_med.fields import DISPLAY_NAMES, FIELDS, KEY_OF_DISPLAY
from vivid_med.states import STATE_OF_CHEXPERT_VALUE

MIMIC_METADATA_COLUMNS: tuple[str, ...] = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
#: The 14 CheXpert columns of mimic-cxr-2.0.0-chexpert.csv, in the official (alphabetical) order.
CHEXPERT_COLUMNS: tuple[str, ...] = tuple(sorted(DISPLAY_NAMES.values()))
MIMIC_SPLIT_COLUMNS: tuple[str, ...] = ("dicom_id", "study_id", "subject_id", "split")
#: Data_Entry_2017's header line as distributed (pandas splits it into 11 columns).
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
#: FIELDS key -> NIH label (lung_lesion becomes Mass or Nodule; findings NIH does not label are dropped).
NIH_LABEL_OF_FIELD: dict[str, str] = {
    "atelectasis": "Atelectasis", "cardiomegaly": "Cardiomegaly", "pleural_effusion": "Effusion",
    "lung_opacity": "Infiltration", "pneumonia": "Pneumonia", "pneumothorax": "Pneumothorax",
    "consolidation": "Consolidation", "edema": "Edema", "pleural_other": "Pleural_Thickening",
}
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
_EXAM = {"PA": "CHEST (PA AND LAT)", "AP": "CHEST (PORTABLE AP)"}


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """uint8 [H, W] -> baseline greyscale JPEG with fixed settings (deterministic bytes)."""
    Image.fromarray(image, mode="L").save(path, format="JPEG", quality=95, optimize=False, progressive=False)


def save_png(path: Path, image: np.ndarray) -> None:
    """uint8 [H, W] -> greyscale PNG with fixed settings (deterministic bytes)."""
    Image.fromarray(image, mode="L").save(path, format="PNG", compress_level=6, optimize=False)


def _render(study: Study, view: str, size: int, style, seed: int, stream: int, index: int) -> np.ndarray:
    """One image; its rng depends only on (seed, stream, image index), not on what was drawn before."""
    return render_cxr(study.findings, np.random.default_rng([seed, stream, index]), size, style, view=view)


def _unique_ints(rng: np.random.Generator, n: int, low: int, span: int) -> np.ndarray:
    return rng.choice(span, size=n, replace=False).astype(np.int64) + low


def _dicom_ids(rng: np.random.Generator, n: int) -> list[str]:
    """MIMIC-style dicom ids: five dash-separated groups of 8 hex digits."""
    words = rng.integers(0, 2**32, size=(n, 5), dtype=np.uint64)
    ids = ["-".join(f"{int(w):08x}" for w in row) for row in words]
    if len(set(ids)) != n:
        raise RuntimeError("dicom id collision; change demo.seed")
    return ids


def _technique(views: tuple[str, ...]) -> str:
    frontal = "Portable AP" if views[0] == "AP" else "PA"
    return f"{frontal} and lateral views of the chest." if len(views) > 1 else f"{frontal} view of the chest."


def write_mimic(root: Path, studies: list[Study], size: int, seed: int) -> dict:
    """Write the MIMIC-CXR-JPG layout under ``root``; returns counts and label-state fractions."""
    ids = np.random.default_rng([seed, 10])
    n_patients = 1 + max(s.patient.index for s in studies)
    subject_ids = np.sort(_unique_ints(ids, n_patients, 10_000_000, 9_000_000))
    study_ids = _unique_ints(ids, len(studies), 50_000_000, 10_000_000)
    dicom_ids = iter(_dicom_ids(ids, sum(len(s.views) for s in studies)))
    meta, labels, split, truth = [], [], [], []
    states = {"present": 0, "absent": 0, "uncertain": 0, "unmentioned": 0}
    n_images = 0
    for k, study in enumerate(tqdm(studies, desc="demo: mimic", mininterval=2)):
        subject, sid = int(subject_ids[study.patient.index]), int(study_ids[k])
        folder = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
        (folder / f"s{sid}").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 11, k])
        report = write_report(study.findings, _EXAM[study.frontal_view], _technique(study.views),
                              study.patient.sex, study.visit > 0, rng)
        (folder / f"s{sid}.txt").write_text(report.text + "\n")
        first = int(np.random.default_rng([seed, 13, study.patient.index]).integers(0, 70 * 365))
        date = pd.Timestamp("2110-01-01") + pd.Timedelta(days=first + study.day)  # MIMIC shifts dates to 2100-2200
        hms = rng.integers(0, [24, 60, 60])
        time = round(float(hms @ [10_000, 100, 1]) + float(rng.random()), 3)  # HHMMSS.fff
        for view in study.views:
            dicom = next(dicom_ids)
            save_jpeg(folder / f"s{sid}" / f"{dicom}.jpg", _render(study, view, size, MIMIC_STYLE, seed, 12, n_images))
            n_images += 1
            orientation = "Recumbent" if view == "AP" and rng.random() < 0.7 else "Erect"
            meta.append((dicom, subject, sid, _EXAM[study.frontal_view], view, size, size,
                         int(date.strftime("%Y%m%d")), time, _EXAM[study.frontal_view], _VIEW_MEANING[view],
                         orientation))
            split.append((dicom, sid, subject, study.patient.split))
        labels.append([subject, sid] + [report.labels[KEY_OF_DISPLAY[c]] for c in CHEXPERT_COLUMNS])
        true = {**study.findings, "no_finding": no_finding(study.findings)}
        truth.append([sid] + [int(true[f]) for f in FIELDS])
        for f in FINDINGS:
            v = report.labels[f]
            states["unmentioned" if v is None else STATE_OF_CHEXPERT_VALUE[v]] += 1
    pd.DataFrame(meta, columns=list(MIMIC_METADATA_COLUMNS)).to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    pd.DataFrame(labels, columns=["subject_id", "study_id", *CHEXPERT_COLUMNS]).to_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    pd.DataFrame(split, columns=list(MIMIC_SPLIT_COLUMNS)).to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
    pd.DataFrame(truth, columns=["study_id", *FIELDS]).to_csv(root / "truth.csv", index=False)
    slots = len(studies) * len(FINDINGS)
    return {"n_patients": n_patients, "n_studies": len(studies), "n_images": n_images,
            "label_states": {k: round(v / slots, 4) for k, v in states.items()}}


def nih_labels(study: Study, rng: np.random.Generator) -> str:
    """NIH 'Finding Labels': sorted, pipe-separated NIH names, or 'No Finding'."""
    names = {NIH_LABEL_OF_FIELD[f] for f, v in study.findings.items() if v and f in NIH_LABEL_OF_FIELD}
    if study.findings["lung_lesion"]:
        names.add("Nodule" if rng.random() < 0.55 else "Mass")
    return "|".join(sorted(names)) or "No Finding"


def write_nih(root: Path, studies: list[Study], size: int, seed: int) -> dict:
    """Write the NIH ChestX-ray14 layout under ``root`` (frontal views only); returns counts."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    spacing = f"{357.5 / size:.6g}"  # a ~36 cm field of view
    rows, lists = [], {"train": [], "validate": [], "test": []}
    for k, study in enumerate(tqdm(studies, desc="demo: nih", mininterval=2)):
        pid = study.patient.index + 1
        name = f"{pid:08d}_{study.visit:03d}.png"
        save_png(root / "images" / name, _render(study, study.frontal_view, size, NIH_STYLE, seed, 21, k))
        rng = np.random.default_rng([seed, 22, k])
        rows.append((name, nih_labels(study, rng), study.visit, pid, study.patient.age + study.day // 365,
                     study.patient.sex, study.frontal_view, size, size, spacing, spacing))
        lists[study.patient.split].append(name)
    with open(root / "Data_Entry_2017.csv", "w", newline="") as fh:
        fh.write(NIH_HEADER + "\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)
    train_val = sorted(lists["train"] + lists["validate"])
    (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n in train_val))
    (root / "test_list.txt").write_text("".join(f"{n}\n" for n in sorted(lists["test"])))
    return {"n_patients": len({s.patient.index for s in studies}), "n_images": len(rows),
            "n_test_images": len(lists["test"])}
