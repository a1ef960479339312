"""Paired comparisons of backbones on the same test images: a patient-level bootstrap of macro-AUC differences.

A backbone's predictions on one protocol are ``Predictions``: test labels (shared by every backbone), patient ids,
and scores of every (pretraining seed, probe seed) pair. Its statistic is the macro-AUC averaged over those pairs,
so seeds are combined inside every resample. A bootstrap resample draws test *patients* with replacement (their
images come along) and recomputes both backbones' statistics on the same draw: the interval of the difference
accounts for test-set noise and for seed noise alike (the seeds' spread enters the average, not the resampling).

AUC under resampling weights is the weighted Mann-Whitney statistic (ties count one half), computed for all
resamples at once from one sort per field: 2,000 resamples of 600 images x 12 fields take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Predictions:
    """labels float [N, C] (NaN: unlabelled; single-label sets as one-hot), patient_ids [N],
    scores float [K, N, C]: one row per (pretraining seed, probe seed) of the backbone."""

    labels: np.ndarray
    patient_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n, c = self.labels.shape
        if self.scores.ndim != 3 or self.scores.shape[1:] != (n, c) or len(self.patient_ids) != n:
            raise ValueError(f"scores {self.scores.shape} / patient ids {len(self.patient_ids)} do not match "
                             f"labels {self.labels.shape}")


def patient_weights(patient_ids: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """float [B, N]: how many times each image is drawn when B resamples draw patients with replacement."""
    patients, index = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(patients), np.full(len(patients), 1 / len(patients)), size=n_boot)  # [B, P]
    return counts[:, index].astype(np.float64)


def weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC [B] of scores ``s`` [N] for binary labels ``y`` [N] under weights ``w`` [B, N]; NaN where a resample
    has no positive or no negative."""
    order = np.argsort(s, kind="stable")
    y, s, w = y[order], s[order], w[:, order]
    pos, neg = w * (y == 1), w * (y == 0)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups of equal scores
    neg_tie = np.add.reduceat(neg, starts, axis=1)  # [B, G]
    pos_tie = np.add.reduceat(pos, starts, axis=1)
    neg_below = np.cumsum(neg_tie, axis=1) - neg_tie
    wins = (pos_tie * (neg_below + 0.5 * neg_tie)).sum(1)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def macro_auc(pred: Predictions, w: np.ndarray) -> np.ndarray:
    """[B] macro-AUC over the classes with a positive and a negative test image, averaged over the backbone's
    (pretraining, probe) seed pairs, per resample."""
    labelled = [(c, ~np.isnan(pred.labels[:, c])) for c in range(pred.labels.shape[1])]
    # a class without both labels has no AUC on the full set, nor in any resample
    scored = [(c, m) for c, m in labelled if len(np.unique(pred.labels[m, c])) >= 2]
    per_seed = []
    for scores in pred.scores:
        fields = [weighted_auc(pred.labels[m, c], scores[m, c], w[:, m]) for c, m in scored]
        with np.errstate(all="ignore"):
            per_seed.append(np.nanmean(np.stack(fields), axis=0))
    return np.mean(per_seed, axis=0)


def compare(a: Predictions, b: Predictions, n_boot: int = 2000, seed: int = 0) -> dict:
    """Macro-AUC of ``a`` and ``b`` on the full test set, and the bootstrap of ``a - b`` over test patients."""
    if not (np.array_equal(a.labels, b.labels, equal_nan=True) and np.array_equal(a.patient_ids, b.patient_ids)):
        raise ValueError("paired comparison needs the same test images, in the same order, for both backbones")
    full = np.ones((1, len(a.labels)))
    w = patient_weights(a.patient_ids, n_boot, seed)
    diff = macro_auc(a, w) - macro_auc(b, w)
    lo, hi = np.nanpercentile(diff, [2.5, 97.5])
    auc_a, auc_b = float(macro_auc(a, full)[0]), float(macro_auc(b, full)[0])
    return {"a": auc_a, "b": auc_b, "difference": auc_a - auc_b,
            "ci95": [float(lo), float(hi)], "p_a_not_better": float(np.nanmean(diff <= 0)),
            "n_boot": n_boot, "n_images": len(a.labels), "n_patients": int(len(np.unique(a.patient_ids)))}
