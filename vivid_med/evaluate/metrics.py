"""Probe metrics: masked multi-label AUC / F1, single-label accuracy / F1 / AUC, seed aggregation.

Label arrays follow :class:`vivid_med.sources.base.ImageSet`: multi-label ``y`` is float [N, F] with
NaN for unlabelled entries; single-label ``y`` is int [N].
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def _macro(per_field: dict[str, float | None]) -> tuple[float | None, int]:
    vals = [v for v in per_field.values() if v is not None]
    return (float(np.mean(vals)) if vals else None), len(vals)


def masked_auc(y: np.ndarray, scores: np.ndarray, fields: tuple[str, ...] | list[str], what: str = "") -> dict[str, Any]:
    """Per-field ROC-AUC over labelled entries of y [N, F] (NaN = unlabelled), scores [N, F].

    A field without both classes among its labelled entries gets AUC None and a warning; ``n_fields``
    says over how many fields ``macro`` was taken.
    """
    per_field: dict[str, float | None] = {}
    for j, f in enumerate(fields):
        m = ~np.isnan(y[:, j])
        pos = int(y[m, j].sum())
        neg = int(m.sum()) - pos
        if pos == 0 or neg == 0:
            warnings.warn(f"{what}: AUC of {f!r} is null ({pos} positives, {neg} negatives labelled)", stacklevel=2)
            per_field[f] = None
        else:
            per_field[f] = float(roc_auc_score(y[m, j], scores[m, j]))
    macro, n = _macro(per_field)
    return {"macro": macro, "n_fields": n, "per_field": per_field}


def masked_f1(y: np.ndarray, scores: np.ndarray, fields: tuple[str, ...] | list[str], threshold: float = 0.5,
              what: str = "") -> dict[str, Any]:
    """Per-field F1 of the positive class at ``threshold`` over labelled entries only (the paper's F1).

    A field with no labelled positives gets F1 None and a warning.
    """
    per_field: dict[str, float | None] = {}
    for j, f in enumerate(fields):
        m = ~np.isnan(y[:, j])
        if not (y[m, j] == 1).any():
            warnings.warn(f"{what}: F1 of {f!r} is null (no labelled positives)", stacklevel=2)
            per_field[f] = None
        else:
            per_field[f] = float(f1_score(y[m, j].astype(int), (scores[m, j] >= threshold).astype(int), zero_division=0))
    macro, n = _macro(per_field)
    return {"macro": macro, "n_fields": n, "per_field": per_field}


def multiclass_metrics(y: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...], what: str = "") -> dict[str, Any]:
    """Accuracy, macro-F1 and one-vs-rest macro-AUC of y int [N] against probs [N, C].

    Binary sets (C == 2) report the AUC of class 1. Classes absent from ``y`` get AUC None (warned).
    """
    pred = probs.argmax(1)
    out: dict[str, Any] = {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=np.arange(len(class_names)), average="macro", zero_division=0)),
    }
    onehot = np.eye(len(class_names), dtype=np.float32)[y]
    if len(class_names) == 2:
        auc = masked_auc(onehot[:, 1:], probs[:, 1:], class_names[1:], what)
    else:
        auc = masked_auc(onehot, probs, class_names, what)
    out["auc"], out["auc_n_classes"] = auc["macro"], auc["n_fields"]
    return out


def aggregate(per_seed: dict[str, Any]) -> Any:
    """Mean +- std over seeds of matching nested dicts {seed_name: metrics}, keeping the per-seed values.

    Float leaves become {"mean", "std", "n", "values": {seed: v}} (None values skipped, std with ddof=1,
    0 for one value); int / str leaves equal across seeds are kept as they are.
    """
    first = next(iter(per_seed.values()))
    if isinstance(first, dict):
        return {k: aggregate({s: m[k] for s, m in per_seed.items()}) for k in first}
    vals = list(per_seed.values())
    if all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in vals) and len(set(vals)) == 1:
        return first
    got = [float(v) for v in vals if v is not None]
    return {
        "mean": float(np.mean(got)) if got else None,
        "std": float(np.std(got, ddof=1)) if len(got) > 1 else (0.0 if got else None),
        "n": len(got),
        "values": {s: (None if v is None else float(v)) for s, v in per_seed.items()},
    }


def rounded(obj: Any, digits: int = 4) -> Any:
    """``obj`` with floats rounded (NaN -> None), so metric JSON is small and byte-stable."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else round(float(obj), digits)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
