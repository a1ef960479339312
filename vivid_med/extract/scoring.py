"""Scoring an extractor against labelled reports: per-field F1 of "positive" (present or uncertain), macro-F1."""

from __future__ import annotations

import csv
from pathlib import Path

from vivid_med.fields import FIELDS

POSITIVE = ("present", "uncertain")


def read_reports(path: str | Path) -> dict[str, str]:
    """``{study_id: report}`` from a ``study_id,report`` CSV (the IU dev reports)."""
    with open(path, newline="") as f:
        return {r["study_id"]: r["report"] for r in csv.DictReader(f)}


def read_labels(path: str | Path) -> dict[str, dict[str, str]]:
    """``{study_id: {field: state or "", "frozen": "0"/"1"}}`` from the labels CSV (ValueError naming row and reason)."""
    out = {}
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            bad = [k for k in FIELDS if r.get(k) not in ("", *POSITIVE, "absent")]
            if bad or r.get("frozen") not in ("0", "1"):
                raise ValueError(f"{path}: row {i}: bad value in {bad or ['frozen']}")
            out[r["study_id"]] = r
    return out


def f1_table(gold: dict[str, dict], pred: dict[str, dict], min_pos: int = 1) -> dict:
    """Per-field ``{tp, fp, fn, n_pos, f1}`` and ``macro_f1`` over fields with at least ``min_pos`` gold positives."""
    per = {}
    for f in FIELDS:
        tp = fp = fn = 0
        for sid, g in gold.items():
            gp, pp = g.get(f) in POSITIVE, pred[sid].get(f) in POSITIVE
            tp += gp and pp
            fp += pp and not gp
            fn += gp and not pp
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        per[f] = {"tp": tp, "fp": fp, "fn": fn, "n_pos": tp + fn, "f1": round(f1, 4)}
    scored = [f for f in FIELDS if per[f]["n_pos"] >= min_pos]
    macro = sum(per[f]["f1"] for f in scored) / len(scored) if scored else float("nan")
    return {"fields": per, "scored": scored, "min_pos": min_pos, "macro_f1": round(macro, 4)}
