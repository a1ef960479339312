"""Metrics: masked AUC / F1 with null fields, single-label metrics, seed aggregation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vivid_med.evaluate.metrics import aggregate, masked_auc, masked_f1, multiclass_metrics, rounded

NAN = np.nan


def test_masked_auc_ignores_unlabelled_and_nulls_single_class_fields():
    y = np.array([[1, 0], [0, NAN], [1, 0], [0, 0], [NAN, 0]], np.float32)
    s = np.array([[0.9, 0.1], [0.2, 0.99], [0.8, 0.2], [0.4, 0.3], [0.0, 0.5]], np.float32)
    with pytest.warns(UserWarning, match="'b' is null"):
        out = masked_auc(y, s, ("a", "b"), "demo test")
    assert out["per_field"] == {"a": 1.0, "b": None}
    assert out["macro"] == 1.0 and out["n_fields"] == 1


def test_masked_auc_would_change_if_unlabelled_entries_counted():
    # The NaN row has the highest score; counting it as a negative would lower the AUC below 1.
    y = np.array([[1], [0], [NAN]], np.float32)
    s = np.array([[0.6], [0.1], [0.9]], np.float32)
    assert masked_auc(y, s, ("a",))["macro"] == 1.0


def test_f1_over_labelled_entries_only():
    y = np.array([[1], [1], [0], [NAN], [NAN]], np.float32)
    s = np.array([[0.9], [0.7], [0.1], [0.9], [0.8]], np.float32)
    assert masked_f1(y, s, ("a",))["macro"] == 1.0  # the two unlabelled predicted positives are not counted
    s2 = np.array([[0.9], [0.2], [0.1], [0.0], [0.0]], np.float32)
    assert masked_f1(y, s2, ("a",))["macro"] == pytest.approx(2 / 3)


def test_multiclass_metrics():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    out = multiclass_metrics(y, p, ("x", "y", "z"))
    assert out["accuracy"] == 0.75 and out["auc_n_classes"] == 3
    assert 0 < out["macro_f1"] < 1 and out["auc"] == pytest.approx(np.mean([1.0, 1.0, 1.0]))
    binary = multiclass_metrics(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]), ("n", "p"))
    assert binary["auc"] == 1.0 and binary["auc_n_classes"] == 1 and binary["accuracy"] == pytest.approx(2 / 3)


def test_aggregate_keeps_per_seed_values_and_is_stable_json():
    per_seed = {"seed0": {"auc": 0.7, "n_fields": 12, "per": {"a": None}},
                "seed1": {"auc": 0.8, "n_fields": 12, "per": {"a": 0.5}},
                "seed2": {"auc": 0.9, "n_fields": 11, "per": {"a": 0.6}}}
    agg = aggregate(per_seed)
    assert agg["auc"]["mean"] == pytest.approx(0.8) and agg["auc"]["std"] == pytest.approx(0.1)
    assert agg["auc"]["values"] == {"seed0": 0.7, "seed1": 0.8, "seed2": 0.9}
    assert agg["n_fields"]["mean"] == pytest.approx(35 / 3)  # differs across seeds -> aggregated
    assert agg["per"]["a"]["n"] == 2 and agg["per"]["a"]["values"]["seed0"] is None
    assert aggregate({"s": {"n": 12}}) == {"n": 12}
    text = json.dumps(rounded(agg), sort_keys=True)
    assert text == json.dumps(rounded(aggregate(per_seed)), sort_keys=True)
    assert "0.8000000" not in text
