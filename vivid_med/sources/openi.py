"""IU X-ray / Open-i (Demner-Fushman et al. 2016), in either of its two common layouts.

- R2Gen's ``annotation.json``: ``{"train": [{"id", "report", "image_path": ["CXR2384_IM-0942/0.png", ...],
  "split"}], "val": [...], "test": [...]}`` with images under ``images/``. Splits as given.
- Open-i's ``ecgen-radiology/<n>.xml``: ``<AbstractText Label="FINDINGS">`` / ``Label="IMPRESSION"``
  (the report), ``<parentImage id="CXR1_1_IM-0001-3001">`` (its images, found by file name anywhere under
  the root, e.g. ``NLMCXR_png/CXR1_1_IM-0001-3001.png``). No official split: studies are split 70/10/20
  (seeded), as R2Gen does.

One study per patient in this collection, so patient_id = study id. Reports only (no label table).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import pandas as pd

from vivid_med.params import NonNegativeInt
from vivid_med.sources.base import file_inside, split_by_patient
from vivid_med.sources.cxr import SourceRows, frame, normalise_split, reject_where, sectioned_report
from vivid_med.sources.dataset import RecordOptions, RecordSource, register
from vivid_med.sources.tablefile import InputFileError, cell_text, load_json
from vivid_med.tables import Reason

SECTIONS = ("FINDINGS", "IMPRESSION")
R2GEN_SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2}
ANNOTATION = "annotation.json"


#: Columns of the rows the two layouts build (``reason`` / ``detail`` set where a report file or entry is unreadable).
ROW_KEYS = ("source_file", "row", "study_id", "patient_id", "image_id", "image_path", "split", "report", "reason",
            "detail")


def _entry_rows(entry: object, n: int, key: str) -> list[dict]:
    """The rows of R2Gen entry ``n`` (one per image; one unreadable row when the entry is not an object)."""
    if not isinstance(entry, dict):
        return [dict(source_file=ANNOTATION, row=n, study_id="", patient_id="", image_id="", image_path="",
                     split=key, report=None, reason=Reason.UNREADABLE_ROW.value, detail="entry is not an object")]
    sid = (cell_text(entry.get("id")) or "").strip()
    paths = entry.get("image_path") or [None]
    paths = [paths] if isinstance(paths, str) else paths
    return [dict(source_file=ANNOTATION, row=n, study_id=sid, patient_id=sid.split("_")[0], image_id=f"{sid}/{k}",
                 image_path=f"images/{p}" if isinstance(p, str) and p else "", split=entry.get("split", key),
                 report=entry.get("report"), reason=None, detail=None) for k, p in enumerate(paths)]


def _rows_r2gen(root: Path) -> pd.DataFrame:
    doc = load_json(root / ANNOTATION)
    if not isinstance(doc, dict):
        raise InputFileError(f"{root / ANNOTATION}: expected an object with train / val / test lists")
    entries = [(key, entry) for key in ("train", "val", "test") for entry in doc.get(key) or []]
    df = pd.DataFrame([row for n, (key, entry) in enumerate(entries, 1) for row in _entry_rows(entry, n, key)],
                      columns=ROW_KEYS)
    df["split"] = normalise_split(df["split"])
    return df


def _xml_report(path: Path) -> tuple[str, list[str]]:
    """("FINDINGS: ...\\n\\nIMPRESSION: ...", parent image ids) of one Open-i XML report."""
    tree = ET.parse(path)
    texts = {a.get("Label", "").upper(): (a.text or "").strip() for a in tree.iter("AbstractText")}
    report = sectioned_report({s: texts.get(s, "") for s in SECTIONS})
    return report, [p.get("id", "") for p in tree.iter("parentImage")]


def _xml_rows(root: Path, rel: str, images: dict[str, str]) -> list[dict]:
    """One row per image of report ``rel`` (the file checked to be inside ``root`` first); one row with a reason
    when the file is outside the root, not a file or not well-formed XML."""
    sid = f"CXR{Path(rel).stem}"
    base = dict(source_file=rel, study_id=sid, patient_id=sid, report=None, reason=None, detail=None)
    path, problem = file_inside(root, rel, Reason.MISSING_REPORT)
    detail = f"report: {problem.value}" if problem is not None else None
    if path is not None:
        try:
            report, parents = _xml_report(path)
        except ET.ParseError as e:
            problem, detail = Reason.UNREADABLE_ROW, f"not well-formed XML (line {e.position[0]})"
    if problem is not None:
        return [{**base, "row": 1, "image_id": "", "image_path": "", "reason": problem.value, "detail": detail}]
    return [{**base, "row": k + 1, "image_id": pid, "report": report,
             "image_path": images.get(pid, f"images/{pid}.png") if pid else ""}
            for k, pid in enumerate(parents or [""])]


def _rows_xml(root: Path, seed: int) -> pd.DataFrame:
    images = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith((".png", ".jpg", ".jpeg")):
                images.setdefault(Path(n).stem, (Path(dirpath) / n).relative_to(root).as_posix())
    reports = sorted((root / "ecgen-radiology").glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
    df = pd.DataFrame([row for p in reports for row in _xml_rows(root, f"ecgen-radiology/{p.name}", images)],
                      columns=ROW_KEYS)
    df["split"] = split_by_patient(df["patient_id"], R2GEN_SPLITS, seed)
    return df


@register("openi")
class IuXrayOpenI(RecordSource):
    """One row per (report, image); ``annotation.json`` when present, else ``ecgen-radiology/*.xml``
    (split 70/10/20 by patient with ``seed``). Reports only: there is no label table."""

    class Options(RecordOptions):
        labels: Literal["reports"] = "reports"
        seed: NonNegativeInt = 0

    def records(self) -> SourceRows:
        root = self.root
        if (root / ANNOTATION).exists():
            rows = _rows_r2gen(root)
        elif (root / "ecgen-radiology").is_dir():
            rows = _rows_xml(root, self.options.seed)
        else:
            raise FileNotFoundError(f"{root}: neither annotation.json (R2Gen) nor ecgen-radiology/ (Open-i XML)")
        df = frame(**{c: rows[c] for c in ROW_KEYS})
        reject_where(df, (df["image_path"] == "").to_numpy(), Reason.MISSING_IMAGE, "report lists no image")
        reject_where(df, df["split"].isna().to_numpy(), Reason.UNKNOWN_SPLIT, "split is not train / val / test")
        return SourceRows(self.kind, root, df)
