"""Free-text chest X-ray reports written from a study's true findings, with the labels the text supports.

Each finding is either mentioned positively (varied synonyms), negated ("no pleural effusion",
"without evidence of pneumothorax", "X is not seen"), hedged ("cannot exclude", "possible",
"may represent") or left unmentioned. The returned labels say exactly what the text says, in the
MIMIC-CXR CheXpert convention: 1.0 present, 0.0 absent, -1.0 uncertain, None (blank) unmentioned;
No Finding is 1.0 when no finding other than Support Devices is mentioned present or uncertain
(as the CheXpert labeler does), else blank.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

from vivid_med.demo.config import FINDINGS
from vivid_med.states import CHEXPERT_VALUE_OF_STATE

#: A regex matching any mention of each finding in this writer's phrasing (no template matches another
#: finding's pattern; only the combined negation "No pleural effusion or pneumothorax." names several).
PATTERNS: dict[str, str] = {
    "enlarged_cardiomediastinum": r"cardiomediastinal|mediastin",
    "cardiomegaly": r"cardiomegaly|heart size|cardiac silhouette|heart is enlarged",
    "lung_opacity": r"opacit|opacific|infiltrat|lungs are clear",
    "lung_lesion": r"nodul|\bmass\b|\bmasses\b|lesion",
    "edema": r"edema|vascular congestion",
    "consolidation": r"consolidat",
    "pneumonia": r"pneumonia|infection",
    "atelectasis": r"atelecta",
    "pneumothorax": r"pneumothora",
    "pleural_effusion": r"effusion",
    "pleural_other": r"pleural thickening|pleural plaque",
    "fracture": r"fracture",
    "support_devices": r"\btube\b|catheter|\bpicc\b|pacemaker|sternotomy wires|\bdevices?\b",
}

_POS: dict[str, tuple[str, ...]] = {
    "enlarged_cardiomediastinum": ("The cardiomediastinal silhouette is enlarged.", "The mediastinum is widened.",
                                   "Mediastinal widening is again seen."),
    "cardiomegaly": ("{Deg} cardiomegaly.", "The heart size is enlarged.", "The cardiac silhouette is enlarged.",
                     "Cardiomegaly is stable."),
    "lung_opacity": ("Patchy opacity in the {loc}.", "There is {deg} opacification of the {loc}.",
                     "Hazy opacities at the {loc}.", "New {loc} infiltrate."),
    "lung_lesion": ("A ___ cm nodule projects over the {loc}.", "Spiculated mass in the {loc}.",
                    "Known {loc} lesion is again demonstrated."),
    "edema": ("{Deg} pulmonary edema.", "Interstitial edema has increased.",
              "Pulmonary vascular congestion and {deg} edema."),
    "consolidation": ("{Loc} consolidation.", "Dense consolidation in the {loc}.",
                      "There is consolidation of the {loc}."),
    "pneumonia": ("Findings are compatible with {loc} pneumonia.", "{Loc} pneumonia.", "Multifocal pneumonia."),
    "atelectasis": ("{Deg} {loc} atelectasis.", "Bibasilar atelectasis.", "Linear atelectasis at the {loc}."),
    "pneumothorax": ("{Size} {side} apical pneumothorax.", "There is a {size} {side} pneumothorax.",
                     "{Side} pneumothorax has increased in size."),
    "pleural_effusion": ("{Size} {side} pleural effusion.", "{Size} bilateral pleural effusions.",
                         "Layering {side} effusion has increased."),
    "pleural_other": ("{Side} pleural thickening.", "Calcified pleural plaques are seen."),
    "fracture": ("Acute fracture of the {side} ___ rib.", "Healed {side} rib fractures.",
                 "Compression fracture of a mid thoracic vertebral body."),
    "support_devices": ("Endotracheal tube terminates ___ cm above the carina.",
                        "{Side} internal jugular central venous catheter ends in the mid SVC.",
                        "Nasogastric tube courses below the diaphragm.", "{Side} PICC ends in the lower SVC.",
                        "Left chest wall pacemaker is in place.", "Median sternotomy wires are intact."),
}
_NEG: dict[str, tuple[str, ...]] = {
    "enlarged_cardiomediastinum": ("The cardiomediastinal silhouette is normal.", "Mediastinal contours are normal."),
    "cardiomegaly": ("Heart size is normal.", "No cardiomegaly.", "The cardiac silhouette is not enlarged."),
    "lung_opacity": ("The lungs are clear.", "No focal opacity is seen."),
    "lung_lesion": ("No pulmonary nodules or masses.", "No pulmonary nodule is seen."),
    "edema": ("No pulmonary edema.", "There is no evidence of edema.", "Pulmonary edema is not seen."),
    "consolidation": ("No focal consolidation.", "There is no consolidation.", "Consolidation is not seen."),
    "pneumonia": ("No evidence of pneumonia.", "Pneumonia is not seen."),
    "atelectasis": ("No atelectasis.",),
    "pneumothorax": ("No pneumothorax.", "There is no evidence of pneumothorax.", "Pneumothorax is not seen."),
    "pleural_effusion": ("No pleural effusion.", "There is no pleural effusion.", "Pleural effusion is not seen."),
    "pleural_other": ("No pleural thickening.",),
    "fracture": ("No fracture is seen.", "No fractures are identified."),
    "support_devices": ("No support devices are seen.",),
}
_HEDGE: dict[str, tuple[str, ...]] = {
    "enlarged_cardiomediastinum": ("Possible mediastinal widening.", "The mediastinum is possibly widened."),
    "cardiomegaly": ("Heart size is borderline enlarged.", "Possible mild cardiomegaly."),
    "lung_opacity": ("Possible faint opacity in the {loc}.", "Subtle {loc} opacity cannot be excluded."),
    "lung_lesion": ("Possible nodule in the {loc}.", "A {loc} nodule cannot be excluded."),
    "edema": ("Possible mild interstitial edema.", "Cannot exclude mild pulmonary edema."),
    "consolidation": ("Possible {loc} consolidation.", "Early consolidation cannot be excluded."),
    "pneumonia": ("Cannot exclude pneumonia.", "Findings may represent early pneumonia.",
                  "Infection cannot be excluded in the appropriate clinical setting."),
    "atelectasis": ("Possible {loc} atelectasis.", "Findings may represent atelectasis."),
    "pneumothorax": ("Possible tiny {side} apical pneumothorax.", "A small pneumothorax cannot be excluded."),
    "pleural_effusion": ("Possible small {side} pleural effusion.", "Trace {side} effusion cannot be excluded."),
    "pleural_other": ("Possible {side} pleural thickening.",),
    "fracture": ("Possible nondisplaced {side} rib fracture.", "A subtle rib fracture cannot be excluded."),
    "support_devices": (),
}
#: Noun phrases for combined negations such as "No pleural effusion or pneumothorax."
_NEG_NOUN: dict[str, str] = {"pleural_effusion": "pleural effusion", "pneumothorax": "pneumothorax",
                             "consolidation": "focal consolidation", "edema": "pulmonary edema"}

#: P(negated mention | finding truly absent); the rest are unmentioned (answerability varies by field).
_P_NEGATED: dict[str, float] = {
    "enlarged_cardiomediastinum": 0.3, "cardiomegaly": 0.4, "lung_opacity": 0.25, "lung_lesion": 0.1,
    "edema": 0.3, "consolidation": 0.45, "pneumonia": 0.15, "atelectasis": 0.05, "pneumothorax": 0.6,
    "pleural_effusion": 0.6, "pleural_other": 0.02, "fracture": 0.08, "support_devices": 0.02,
}
#: P(hedged mention | finding truly absent): the radiologist's doubt about a finding that is not there.
_P_FALSE_HEDGE: dict[str, float] = {
    "pneumonia": 0.04, "consolidation": 0.02, "pleural_effusion": 0.02, "edema": 0.02, "atelectasis": 0.02,
    "lung_lesion": 0.01, "fracture": 0.01, "cardiomegaly": 0.02, "pneumothorax": 0.01,
}
_ORDER = ("support_devices", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "consolidation",
          "pneumonia", "atelectasis", "edema", "lung_lesion", "pleural_effusion", "pneumothorax",
          "pleural_other", "fracture")
_NORMAL_IMPRESSION = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                      "No acute intrathoracic process.")
_INDICATIONS = ("cough", "shortness of breath", "chest pain", "fever", "hypoxia", "dyspnea", "weakness",
                "preoperative evaluation")
_FILL = {"deg": ("mild", "moderate", "severe"), "size": ("small", "moderate", "large"), "side": ("right", "left"),
         "loc": ("right lower lobe", "left lower lobe", "right upper lobe", "left base", "right base",
                 "lingula", "right middle lobe")}


@dataclass(frozen=True)
class Report:
    """A report's text and its labels: FIELDS key -> 1.0 / 0.0 / -1.0 / None (blank)."""

    text: str
    labels: dict[str, float | None]


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _fills(rng: np.random.Generator) -> dict[str, dict[str, str]]:
    """Per finding, one severity / size / side / location for the whole report (findings and impression agree)."""
    out = {}
    for f in FINDINGS:
        picks = {k: _pick(v, rng) for k, v in _FILL.items()}
        out[f] = picks | {k.capitalize(): v.capitalize() for k, v in picks.items()}
    return out


def mention_states(findings: dict[str, bool], rng: np.random.Generator) -> dict[str, str | None]:
    """Decide per finding what the report will say: present / absent / uncertain / None (unmentioned)."""
    states: dict[str, str | None] = {}
    for f in FINDINGS:
        u = rng.random()
        if findings[f]:
            p_silent = 0.05
            if f == "lung_opacity" and any(findings[c] for c in ("consolidation", "pneumonia", "edema")):
                p_silent = 0.5  # described by the more specific finding instead
            elif f in ("enlarged_cardiomediastinum", "support_devices"):
                p_silent = 0.2
            p_hedge = 0.1 if _HEDGE[f] else 0.0
            states[f] = None if u < p_silent else "uncertain" if u < p_silent + p_hedge else "present"
        else:
            p_hedge = _P_FALSE_HEDGE.get(f, 0.0)
            states[f] = "uncertain" if u < p_hedge else "absent" if u < p_hedge + _P_NEGATED[f] else None
    return states


def _sentences(states: dict[str, str | None], fills: dict[str, dict[str, str]],
               rng: np.random.Generator) -> list[str]:
    """One sentence per mentioned finding; some negations merged ("No pleural effusion or pneumothorax.")."""
    out: list[str] = []
    merge = [f for f in _ORDER if states[f] == "absent" and f in _NEG_NOUN] if rng.random() < 0.5 else []
    if len(merge) < 2:
        merge = []
    for f in _ORDER:
        state = states[f]
        if state is None or f in merge:
            continue
        table = {"present": _POS, "absent": _NEG, "uncertain": _HEDGE}[state]
        out.append(_pick(table[f], rng).format(**fills[f]))
    if merge:
        nouns = [_NEG_NOUN[f] for f in merge]
        out.append("No " + (", ".join(nouns[:-1]) + " or " + nouns[-1]) + ".")
    return out


def _section(title: str, sentences: list[str]) -> str:
    body = textwrap.fill("  ".join(sentences), width=78, initial_indent=" ", subsequent_indent=" ")
    return f" {title}:\n \n{body}\n"


def write_report(findings: dict[str, bool], exam: str, technique: str, sex: str, prior: bool,
                 rng: np.random.Generator) -> Report:
    """A MIMIC-style report for one study and the CheXpert labels its text supports.

    findings: FINDINGS key -> truth; exam / technique: header lines; sex: "M" / "F"; prior: a comparison exists.
    """
    states = mention_states(findings, rng)
    labels: dict[str, float | None] = {f: (CHEXPERT_VALUE_OF_STATE[s] if s else None) for f, s in states.items()}
    abnormal = [f for f in _ORDER if states[f] in ("present", "uncertain") and f != "support_devices"]
    labels["no_finding"] = None if abnormal else 1.0

    fills = _fills(rng)
    body = _sentences(states, fills, rng)
    if abnormal:
        keep = [f for f in abnormal if rng.random() < 0.7] or abnormal[:1]
        impression = _sentences({f: (states[f] if f in keep else None) for f in FINDINGS}, fills, rng)
    else:
        impression = [_pick(_NORMAL_IMPRESSION, rng)]
    layout = rng.random()
    person = "man" if sex == "M" else "woman"
    head = (f"                                 FINAL REPORT\n EXAMINATION:  {exam}\n \n"
            f" INDICATION:  ___ year old {person} with {_pick(_INDICATIONS, rng)}.\n \n"
            f" TECHNIQUE:  {technique}\n \n COMPARISON:  {'___.' if prior else 'None.'}\n \n")
    if layout < 0.15 or not body:  # impression only
        parts = [_section("IMPRESSION", body if abnormal else body + impression)]
    elif layout < 0.3:  # findings only
        parts = [_section("FINDINGS", body)]
    else:
        parts = [_section("FINDINGS", body), _section("IMPRESSION", impression)]
    if abnormal and rng.random() < 0.2:
        parts.append(" NOTIFICATION:  The findings were discussed with Dr. ___ by ___ on the telephone on ___ at\n"
                     " ___, ___ minutes after discovery of the findings.\n")
    return Report(text=head + " \n".join(parts), labels=labels)
