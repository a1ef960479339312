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

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import pandas as pd

from vivid_med.params import NonNegativeInt
from vivid_med.sources.base import split_by_patient
from vivid_med.sources.cxr import SourceRows, frame, normalise_split, reject_where, sectioned_report
from vivid_med.sources.dataset import RecordOptions, RecordSource, register
from vivid_med.tables import Reason

SECTIONS = ("FINDINGS", "IMPRESSION")
R2GEN_SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2}


def _rows_r2gen(root: Path) -> pd.DataFrame:
    doc = json.loads((root / "annotation.json").read_text(encoding="utf-8"))
    rows = []
    n = 0
    for key in ("train", "val", "test"):
        for entry in doc.get(key, []):
            n += 1
            paths = entry.get("image_path") or [None]
            for k, p in enumerate(paths):
                sid = str(entry.get("id", "")).strip()
                rows.append(dict(source_file="annotation.json", row=n, study_id=sid, patient_id=sid.split("_")[0],
                                 image_id=f"{sid}/{k}", image_path=f"images/{p}" if p else "",
                                 split=entry.get("split", key), report=entry.get("report")))
    df = pd.DataFrame(rows)
    df["split"] = normalise_split(df["split"])
    return df


def _xml_report(path: Path) -> tuple[str, list[str]]:
    """("FINDINGS: ...\\n\\nIMPRESSION: ...", parent image ids) of one Open-i XML report."""
    tree = ET.parse(path)
    texts = {a.get("Label", "").upper(): (a.text or "").strip() for a in tree.iter("AbstractText")}
    report = sectioned_report({s: texts.get(s, "") for s in SECTIONS})
    return report, [p.get("id", "") for p in tree.iter("parentImage")]


def _rows_xml(root: Path, seed: int) -> pd.DataFrame:
    images = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith((".png", ".jpg", ".jpeg")):
                images.setdefault(Path(n).stem, (Path(dirpath) / n).relative_to(root).as_posix())
    rows = []
    for path in sorted((root / "ecgen-radiology").glob("*.xml"), key=lambda p: (len(p.stem), p.stem)):
        report, parents = _xml_report(path)
        sid = f"CXR{path.stem}"
        for k, pid in enumerate(parents or [""]):
            rows.append(dict(source_file=f"ecgen-radiology/{path.name}", row=k + 1, study_id=sid, patient_id=sid,
                             image_id=pid, image_path=images.get(pid, f"images/{pid}.png") if pid else "",
                             report=report))
    df = pd.DataFrame(rows)
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
        if (root / "annotation.json").is_file():
            rows = _rows_r2gen(root)
        elif (root / "ecgen-radiology").is_dir():
            rows = _rows_xml(root, self.options.seed)
        else:
            raise FileNotFoundError(f"{root}: neither annotation.json (R2Gen) nor ecgen-radiology/ (Open-i XML)")
        df = frame(**{c: rows[c] for c in ("source_file", "row", "study_id", "patient_id", "image_id",
                                           "image_path", "split", "report")})
        reject_where(df, (df["image_path"] == "").to_numpy(), Reason.MISSING_IMAGE, "report lists no image")
        reject_where(df, df["split"].isna().to_numpy(), Reason.UNKNOWN_SPLIT, "split is not train / val / test")
        return SourceRows(self.kind, root, df)
