"""Scoring an extractor against labelled reports: per-field F1 of "positive" (present or uncertain), macro-F1 with
percentile bootstrap intervals over reports (paired across systems), and per-state agreement with MIMIC-style
CheXpert label files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

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


def _positive_matrix(table: dict[str, dict], ids: list[str]) -> np.ndarray:
    """``(n_reports, n_fields)`` booleans: state present or uncertain."""
    return np.array([[table[s].get(f) in POSITIVE for f in FIELDS] for s in ids], dtype=bool).reshape(len(ids), len(FIELDS))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from counts (any shape); 1.0 where there is nothing to find and nothing found (as ``f1_table``)."""
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)


def bootstrap_f1(gold: dict[str, dict], preds: dict[str, dict[str, dict]], min_pos: int = 15, n_boot: int = 2000,
                 seed: int = 0, level: float = 0.95) -> dict:
    """Per-field F1 and macro-F1 of each system in ``preds`` (name -> {study_id: states}) against ``gold``, with
    ``level`` percentile bootstrap intervals over reports, and the paired interval of every difference of macro-F1
    between systems (first - second, in ``preds`` order; the same resampled reports for every system).

    The macro average is over the fields with at least ``min_pos`` gold positives in the full sample (fixed
    across resamples). Resamples: ``np.random.default_rng(seed).integers(0, n, (n_boot, n))``.
    """
    ids = sorted(gold)
    g = _positive_matrix(gold, ids)
    n_pos = g.sum(axis=0)
    scored = [i for i, f in enumerate(FIELDS) if n_pos[i] >= min_pos]
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def ci(v: np.ndarray) -> list[float]:
        return [round(float(x), 4) for x in np.percentile(v, q)]

    out = {"n_reports": len(ids), "n_boot": n_boot, "seed": seed, "level": level, "min_pos": min_pos,
           "scored": [FIELDS[i] for i in scored], "n_pos": {f: int(n_pos[i]) for i, f in enumerate(FIELDS)},
           "systems": {}, "differences": {}}
    boot_macro = {}
    for name, pred in preds.items():
        p = _positive_matrix(pred, ids)
        tp, fp, fn = (g & p).astype(np.int64), (~g & p).astype(np.int64), (g & ~p).astype(np.int64)
        f1 = _f1(tp.sum(0), fp.sum(0), fn.sum(0))
        bf1 = _f1(tp[idx].sum(1), fp[idx].sum(1), fn[idx].sum(1))  # (n_boot, n_fields)
        macro = float(f1[scored].mean()) if scored else float("nan")
        boot_macro[name] = bf1[:, scored].mean(axis=1) if scored else np.full(n_boot, np.nan)
        out["systems"][name] = {
            "macro_f1": round(macro, 4), "macro_f1_ci": ci(boot_macro[name]),
            "fields": {f: {"f1": round(float(f1[i]), 4), "ci": ci(bf1[:, i]), "tp": int(tp[:, i].sum()),
                           "fp": int(fp[:, i].sum()), "fn": int(fn[:, i].sum())} for i, f in enumerate(FIELDS)}}
    names = list(preds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = out["systems"][a]["macro_f1"] - out["systems"][b]["macro_f1"]
            out["differences"][f"{a} - {b}"] = {"macro_f1": round(d, 4), "ci": ci(boot_macro[a] - boot_macro[b])}
    return out


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
