"""NIH ChestX-ray14 "zero-shot" transfer: a CheXpert-style head applied unchanged on the 8 shared labels."""

from __future__ import annotations

import numpy as np

from vivid_med.fields import NIH_SHARED_FIELDS

#: The 14 NIH labels (order of the NIH paper), for probes trained on NIH itself.
NIH_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)


def shared_columns(source_fields: tuple[str, ...] | list[str],
                   target_fields: tuple[str, ...] = NIH_SHARED_FIELDS) -> list[int]:
    """Column of each target field in the source head's outputs (ValueError naming a missing field)."""
    missing = [f for f in target_fields if f not in source_fields]
    if missing:
        raise ValueError(f"transfer: source head has no output for {missing}; it has {list(source_fields)}")
    return [list(source_fields).index(f) for f in target_fields]


def transfer_scores(probs: np.ndarray, source_fields: tuple[str, ...] | list[str],
                    target_fields: tuple[str, ...] = NIH_SHARED_FIELDS) -> np.ndarray:
    """Source-head probabilities [N, F_src] -> scores [N, F_tgt] on the shared labels, unchanged."""
    return probs[:, shared_columns(source_fields, target_fields)]


def nih_label_matrix(finding_labels: list[str] | np.ndarray, labels: tuple[str, ...] = NIH_LABELS) -> np.ndarray:
    """NIH "Finding Labels" strings ("A|B", "No Finding") -> 0/1 float32 [N, len(labels)].

    Raises ValueError naming the row of an unknown label.
    """
    known = set(NIH_LABELS) | {"No Finding"}
    out = np.zeros((len(finding_labels), len(labels)), np.float32)
    col = {name: j for j, name in enumerate(labels)}
    for i, s in enumerate(finding_labels):
        for name in (n.strip() for n in str(s).split("|")):
            if name not in known:
                raise ValueError(f"NIH labels row {i}: unknown finding {name!r}")
            if name in col:
                out[i, col[name]] = 1.0
    return out
