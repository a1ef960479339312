"""Probe protocols over cached features: fit on train, select on val, score on test, for each seed.

Every protocol returns per-seed metric dicts aggregated by :func:`metrics.aggregate` (mean, std and the
per-seed values), plus what plots need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vivid_med.evaluate.metrics import aggregate, masked_auc, masked_f1, multiclass_metrics
from vivid_med.evaluate.probes import LinearProbe, ProbeParams, fit_probe, subsample_patients
from vivid_med.sources.base import check_patient_splits


@dataclass
class ProbeData:
    """Cached features [N, D] with labels (float [N, C] NaN-masked, or int [N]), patient ids and splits."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    splits: np.ndarray
    class_names: tuple[str, ...]
    multilabel: bool

    def __post_init__(self) -> None:
        check_patient_splits(self.patient_ids, self.splits, self.name)

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, labels, patient ids) of one split; ValueError when it is empty."""
        m = self.splits == split
        if not m.any():
            raise ValueError(f"{self.name}: split {split!r} is empty")
        return self.features[m], self.labels[m], self.patient_ids[m]

    def describe(self) -> str:
        counts = ", ".join(f"{s} {int((self.splits == s).sum())}" for s in ("train", "val", "test"))
        return f"{self.name}: {counts} images, {len(np.unique(self.patient_ids))} patients"


@dataclass
class ProbeResult:
    """Aggregated metrics, the probe of each seed, the test labels and patient ids, and every seed's test scores
    (``seed_scores`` [S, N, C], in seed order: the paired comparisons of ``vivid_med.evaluate.paired``)."""

    metrics: dict
    probes: dict[str, LinearProbe] = field(default_factory=dict)
    test_labels: np.ndarray | None = None
    test_patient_ids: np.ndarray | None = None
    seed_scores: list[np.ndarray] = field(default_factory=list)

    @property
    def test_scores(self) -> np.ndarray:
        """The first seed's test scores [N, C] (what the plots show)."""
        return self.seed_scores[0]


def run_probe(data: ProbeData, seeds: list[int], cfg: ProbeParams, *, fraction: float = 1.0,
              report: tuple[str, ...] | None = None) -> ProbeResult:
    """Fit one head per seed on train (a seeded ``fraction`` of its patients), select on val, test on test.

    Multi-label metrics (masked AUC, labelled-entry F1) are taken over ``report`` (default: all outputs);
    single-label ones are accuracy, macro-F1 and one-vs-rest macro-AUC.
    """
    x_tr, y_tr, p_tr = data.part("train")
    x_va, y_va, _ = data.part("val")
    x_te, y_te, p_te = data.part("test")
    report = report or data.class_names
    cols = [data.class_names.index(f) for f in report]
    result = ProbeResult(metrics={}, test_labels=y_te, test_patient_ids=p_te)
    per_seed = {}
    for seed in seeds:
        keep = subsample_patients(p_tr, fraction, seed) if fraction < 1 else np.ones(len(x_tr), bool)
        probe, info = fit_probe(x_tr[keep], y_tr[keep], x_va, y_va, n_out=len(data.class_names),
                                multilabel=data.multilabel, seed=seed, cfg=cfg)
        scores = probe.predict(x_te)
        what = f"{data.name} seed {seed}"
        if data.multilabel:
            auc = masked_auc(y_te[:, cols], scores[:, cols], report, what)
            f1 = masked_f1(y_te[:, cols], scores[:, cols], report, what=what)
            m = {"auc": auc["macro"], "auc_n_fields": auc["n_fields"], "f1": f1["macro"],
                 "f1_n_fields": f1["n_fields"], "per_field_auc": auc["per_field"]}
        else:
            m = multiclass_metrics(y_te, scores, data.class_names, what)
        m.update(n_train=int(keep.sum()), weight_decay=info["weight_decay"], epochs=info["epochs"])
        per_seed[f"seed{seed}"] = m
        result.probes[f"seed{seed}"] = probe
        result.seed_scores.append(scores)
    result.metrics = aggregate(per_seed)
    return result


def transfer_probe(probes: dict[str, LinearProbe], features: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray,
                   source_classes: tuple[str, ...], target_classes: tuple[str, ...], what: str) -> ProbeResult:
    """Apply each seed's source head unchanged to target features; masked AUC on the shared classes."""
    from vivid_med.evaluate.transfer import transfer_scores

    per_seed, result = {}, ProbeResult(metrics={}, test_labels=labels, test_patient_ids=patient_ids)
    for seed, probe in probes.items():
        scores = transfer_scores(probe.predict(features), source_classes, target_classes)
        auc = masked_auc(labels, scores, target_classes, f"{what} {seed}")
        per_seed[seed] = {"auc": auc["macro"], "auc_n_fields": auc["n_fields"], "per_field_auc": auc["per_field"]}
        result.seed_scores.append(scores)
    result.metrics = aggregate(per_seed)
    return result
