"""Scoring an extractor against labelled reports: per-field F1 of "positive" (present or uncertain), macro-F1, and
per-state agreement with MIMIC-style CheXpert label files."""

from __future__ import annotations

import csv
from pathlib import Path

from vivid_med.fields import FIELDS, KEY_OF_DISPLAY

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


#: MIMIC-CXR CheXpert label values -> states (blank: not mentioned).
CHEXPERT_STATE = {"1.0": "present", "0.0": "absent", "-1.0": "uncertain", "": None}


def read_chexpert_labels(path: str | Path) -> dict[str, dict[str, str | None]]:
    """``{study_id: {field: state or None}}`` from a ``mimic-cxr-2.0.0-chexpert.csv``-style file (display-name
    columns; ValueError naming the row and column on a value other than 1.0 / 0.0 / -1.0 / blank)."""
    out = {}
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            states = {}
            for disp, key in KEY_OF_DISPLAY.items():
                v = (r.get(disp) or "").strip()
                if v not in CHEXPERT_STATE:
                    raise ValueError(f"{path}: row {i}: column {disp!r}: bad value {v!r}")
                states[key] = CHEXPERT_STATE[v]
            out[r["study_id"]] = states
    return out


def state_agreement(gold: dict[str, dict[str, str | None]], results: dict, skip: tuple[str, ...] = ("no_finding",)
                    ) -> dict:
    """Per-state agreement of extraction ``results`` (study_id -> ExtractionResult) with ``gold`` labels.

    A slot is one (study, field) outside ``skip``; slots whose predicted state came only from hierarchy propagation
    (provenance ``from <child>``) and differs from the gold one are left out (a labelling convention, counted in
    ``n_hierarchy_skipped``). ``agreement``: over all slots (blank == blank counts); ``agreement_mentioned``: over
    slots where gold or prediction is non-blank; ``fields``: the latter per field.
    """
    n = agree = n_m = agree_m = skipped = 0
    per: dict[str, list[int]] = {}
    for sid, g in gold.items():
        res = results[sid]
        for f in FIELDS:
            if f in skip:
                continue
            gs, ps = g[f], res.states[f]
            if gs != ps and res.provenance.get(f, "").startswith("from "):
                skipped += 1
                continue
            n += 1
            agree += gs == ps
            if gs is not None or ps is not None:
                n_m += 1
                agree_m += gs == ps
                per.setdefault(f, [0, 0])[0] += gs == ps
                per[f][1] += 1
    return {"n_slots": n, "agreement": agree / n if n else float("nan"), "n_mentioned": n_m,
            "agreement_mentioned": agree_m / n_m if n_m else float("nan"), "n_hierarchy_skipped": skipped,
            "fields": {f: {"agree": a, "n": m, "agreement": a / m} for f, (a, m) in per.items()}}
