"""Paired patient-level bootstrap: weighted AUC equals sklearn's on the resampled set, and pairs behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vivid_med.evaluate.paired import Predictions, compare, patient_weights, weighted_auc


def _toy(n: int = 120, c: int = 3, k: int = 2, signal: float = 1.0, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.4).astype(float)
    y[rng.random((n, c)) < 0.2] = np.nan
    scores = np.stack([np.nan_to_num(y) * signal + rng.normal(size=(n, c)) for _ in range(k)])
    return Predictions(y, np.repeat(np.arange(n // 2), 2).astype(str), scores)


def test_weighted_auc_equals_sklearn_on_the_resampled_images():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50).astype(float)
    s = np.round(rng.normal(size=50), 1)  # ties
    w = rng.integers(0, 3, (4, 50)).astype(float)
    got = weighted_auc(y, s, w)
    for b in range(4):
        idx = np.repeat(np.arange(50), w[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(y[idx], s[idx]))
    assert np.isnan(weighted_auc(np.ones(5), np.arange(5.0), np.ones((1, 5))))[0]


def test_patients_are_drawn_whole_and_seeded():
    pids = np.array(["a", "a", "b", "c", "c", "c"])
    w = patient_weights(pids, 50, seed=3)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()  # a patient's images come together
    assert (w[:, [0, 2, 3]].sum(1) == 3).all()  # each resample draws 3 patients (one image column per patient)
    assert np.array_equal(w, patient_weights(pids, 50, seed=3))


def test_identical_backbones_differ_by_exactly_zero_and_a_better_one_wins():
    a = _toy(signal=1.0)
    same = compare(a, a, n_boot=200)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]
    worse = Predictions(a.labels, a.patient_ids, a.scores * 0.1 + np.random.default_rng(9).normal(size=a.scores.shape))
    res = compare(a, worse, n_boot=500)
    assert res["difference"] > 0 and res["ci95"][0] > 0 and res["p_a_not_better"] < 0.05
    with pytest.raises(ValueError, match="same test images"):
        compare(a, _toy(n=100))


def test_a_class_without_both_labels_in_the_test_set_is_left_out_as_in_the_headline():
    a = _toy(c=3)
    labels = a.labels.copy()
    labels[:, 1] = np.nan  # nobody labelled
    labels[:, 2] = np.where(np.isnan(labels[:, 2]), np.nan, 0.0)  # negatives only
    blanked = Predictions(labels, a.patient_ids, a.scores)
    only_first = Predictions(labels[:, :1], a.patient_ids, a.scores[:, :, :1])
    assert compare(blanked, blanked, n_boot=50)["a"] == pytest.approx(compare(only_first, only_first, n_boot=50)["a"])
