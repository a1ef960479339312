"""The Unified Medical Schema's chest X-ray fields: keys and display names (states: ``vivid_med.states``).

Code and Parquet columns use the snake_case key (``pleural_effusion``); the JSON a language model
reads uses the display name ("Pleural Effusion").
"""

from __future__ import annotations

#: The 14 CheXpert observations, in CheXpert's column order.
DISPLAY_NAMES: dict[str, str] = {
    "no_finding": "No Finding",
    "enlarged_cardiomediastinum": "Enlarged Cardiomediastinum",
    "cardiomegaly": "Cardiomegaly",
    "lung_opacity": "Lung Opacity",
    "lung_lesion": "Lung Lesion",
    "edema": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "pleural_effusion": "Pleural Effusion",
    "pleural_other": "Pleural Other",
    "fracture": "Fracture",
    "support_devices": "Support Devices",
}
FIELDS: tuple[str, ...] = tuple(DISPLAY_NAMES)
KEY_OF_DISPLAY: dict[str, str] = {v: k for k, v in DISPLAY_NAMES.items()}

#: The paper's 12 pretraining fields: the 14 minus No Finding and Pleural Other.
PRETRAIN_FIELDS: tuple[str, ...] = tuple(f for f in FIELDS if f not in ("no_finding", "pleural_other"))

#: The 8 labels NIH ChestX-ray14 shares with CheXpert (method.md section 5).
NIH_SHARED_FIELDS: tuple[str, ...] = (
    "no_finding", "atelectasis", "cardiomegaly", "consolidation",
    "edema", "pleural_effusion", "pneumonia", "pneumothorax",
)

#: Rare fields that field-query sampling may force into a sample (method.md section 3).
RARE_FIELDS: tuple[str, ...] = (
    "fracture", "pneumonia", "lung_lesion", "cardiomegaly", "enlarged_cardiomediastinum",
)


def check_fields(fields: list[str] | tuple[str, ...], what: str = "fields") -> tuple[str, ...]:
    """Return ``fields`` as a tuple, raising ValueError naming ``what`` on an unknown key."""
    unknown = [f for f in fields if f not in DISPLAY_NAMES]
    if unknown:
        raise ValueError(f"{what}: unknown finding(s) {unknown}; known: {list(FIELDS)}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"{what}: duplicate finding in {list(fields)}")
    return tuple(fields)
