"""NIH ChestX-ray14 "zero-shot" transfer: a CheXpert-style head applied unchanged on the 8 shared labels."""

from __future__ import annotations

import numpy as np

from vivid_med.fields import NIH_SHARED_FIELDS
from vivid_med.sources.nih import NIH_LABELS, nih_label_matrix  # noqa: F401 (the dataset's labels, re-exported)


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
