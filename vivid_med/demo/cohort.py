"""Seeded sampling of a synthetic cohort: patients -> studies (visits) -> views, with findings that co-occur
the way they do clinically, and a train / validate / test split by patient.

Each patient has an acuity in [0, 1]; acute findings and support devices are more likely in sicker
patients (and in portable AP studies). Base prevalences are the configured ones (their mean over acuity
is the configured value); the rules below then add findings that come with others:
edema -> cardiomegaly, pleural effusion; cardiomegaly -> enlarged cardiomediastinum;
pneumonia -> consolidation; pneumonia / consolidation / edema -> lung opacity; effusion -> atelectasis;
pneumothorax -> support devices (chest tube); fracture -> pneumothorax. Chronic findings persist across
a patient's visits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vivid_med.demo.config import FINDINGS

#: How strongly acuity modulates each base prevalence: p * (1 + w * (2 * acuity - 1)), mean p over acuity.
ACUITY_WEIGHT: dict[str, float] = {
    "support_devices": 0.95, "edema": 0.8, "pleural_effusion": 0.7, "consolidation": 0.6, "pneumonia": 0.6,
    "pneumothorax": 0.5, "atelectasis": 0.6, "lung_opacity": 0.6, "cardiomegaly": 0.4,
    "enlarged_cardiomediastinum": 0.3, "fracture": 0.3, "lung_lesion": 0.0, "pleural_other": 0.0,
}
#: (cause, effect, probability): the effect is added with this probability when the cause is present.
CO_OCCURRENCE: tuple[tuple[str, str, float], ...] = (
    ("edema", "cardiomegaly", 0.6),
    ("edema", "pleural_effusion", 0.6),
    ("cardiomegaly", "enlarged_cardiomediastinum", 0.15),
    ("pneumonia", "consolidation", 0.6),
    ("pneumonia", "lung_opacity", 1.0),
    ("consolidation", "lung_opacity", 1.0),
    ("edema", "lung_opacity", 1.0),
    ("pleural_effusion", "atelectasis", 0.3),
    ("fracture", "pneumothorax", 0.1),
    ("pneumothorax", "support_devices", 0.3),
)
#: Findings copied from the previous visit with probability 0.8 (else drawn afresh).
CHRONIC: tuple[str, ...] = ("cardiomegaly", "enlarged_cardiomediastinum", "lung_lesion", "pleural_other")
SPLITS: tuple[str, ...] = ("train", "validate", "test")


@dataclass(frozen=True)
class Patient:
    """index: 0-based position in the cohort; split: train / validate / test."""

    index: int
    age: int
    sex: str
    acuity: float
    split: str


@dataclass(frozen=True)
class Study:
    """One visit: its true findings (FINDINGS keys), frontal view (PA/AP), extra lateral view, day offset."""

    patient: Patient
    visit: int
    day: int
    findings: dict[str, bool]
    acuity: float
    frontal_view: str
    lateral: bool

    @property
    def views(self) -> tuple[str, ...]:
        return (self.frontal_view, "LATERAL") if self.lateral else (self.frontal_view,)


def sample_findings(prevalence: dict[str, float], acuity: float, rng: np.random.Generator,
                    previous: dict[str, bool] | None = None) -> dict[str, bool]:
    """Findings of one study: acuity-modulated base draws, chronic carry-over, then co-occurrence rules."""
    u = rng.random(len(FINDINGS))
    out = {f: bool(u[i] < prevalence[f] * (1 + ACUITY_WEIGHT[f] * (2 * acuity - 1)))
           for i, f in enumerate(FINDINGS)}
    carry = rng.random(len(CHRONIC))
    if previous is not None:
        for c, f in zip(carry, CHRONIC):
            if c < 0.8:
                out[f] = previous[f]
    rules = rng.random(len(CO_OCCURRENCE))
    for r, (cause, effect, p) in zip(rules, CO_OCCURRENCE):
        if out[cause] and r < p:
            out[effect] = True
    return out


def draw_patient_splits(n: int, fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """A split name for each of ``n`` patients (test / validate counts from ``fractions``, the rest train), in a
    random order drawn from ``rng``; a non-zero fraction gets >= 1 patient, train keeps >= 1."""
    labels: list[str] = []
    for s in ("test", "validate"):
        frac = fractions.get(s, 0.0)
        k = max(int(round(frac * n)), int(frac > 0))
        labels += [s] * max(0, min(k, n - 1 - len(labels)))
    labels += ["train"] * (n - len(labels))
    return [labels[i] for i in rng.permutation(n)]


def sample_cohort(n_patients: int, per_patient: list[int], prevalence: dict[str, float],
                  split_fractions: dict[str, float], lateral_fraction: float,
                  rng: np.random.Generator) -> list[Study]:
    """Patients -> studies, ordered by patient then visit. per_patient: [low, high] visits (inclusive)."""
    splits = draw_patient_splits(n_patients, split_fractions, rng)
    studies: list[Study] = []
    for i in range(n_patients):
        acuity = float(rng.beta(1.5, 1.5))  # mean 0.5, so the mean base prevalence is the configured one
        age = int(np.clip(rng.normal(62, 17), 18, 95))
        patient = Patient(i, age, "M" if rng.random() < 0.5 else "F", acuity, splits[i])
        n_visits = int(rng.integers(per_patient[0], per_patient[1] + 1))
        previous, day = None, 0
        for v in range(n_visits):
            a = float(np.clip(acuity + rng.normal(0, 0.1), 0, 1))
            findings = sample_findings(prevalence, a, rng, previous)
            p_ap = 0.1 + 0.6 * a + (0.3 if findings["support_devices"] else 0.0)
            view = "AP" if rng.random() < p_ap else "PA"
            studies.append(Study(patient, v, day, findings, a, view, bool(rng.random() < lateral_fraction)))
            previous, day = findings, day + int(rng.integers(1, 400))
    return studies


def no_finding(findings: dict[str, bool]) -> bool:
    """True when no pathology is present (Support Devices is not a pathology, as in CheXpert)."""
    return not any(v for f, v in findings.items() if f != "support_devices")


def prevalences(studies: list[Study]) -> dict[str, float]:
    """Observed fraction of studies with each finding (and No Finding)."""
    n = max(len(studies), 1)
    out = {f: sum(s.findings[f] for s in studies) / n for f in FINDINGS}
    out["no_finding"] = sum(no_finding(s.findings) for s in studies) / n
    return {k: round(v, 4) for k, v in out.items()}
