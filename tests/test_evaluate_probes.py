"""Probes on features: masked BCE head learns, label encoding, patient subsampling, val-only selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vivid_med.evaluate.probes import ProbeParams, fit_probe, probe_targets, subsample_patients
from vivid_med.evaluate.protocols import ProbeData, run_probe

FAST = ProbeParams(weight_decays=[1e-4, 1e-1], lr=1e-2, max_epochs=60, patience=5, batch_size=64)


def _toy(n: int = 300, d: int = 16, seed: int = 0):
    """Features where field 0 is linearly decodable, field 1 is noise; 30% of labels missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = np.stack([(x[:, 0] + 0.3 * rng.normal(size=n) > 0), rng.random(n) < 0.3], 1).astype(np.float32)
    y[rng.random(y.shape) < 0.3] = np.nan
    return x, y


def test_multilabel_probe_learns_decodable_field_and_ignores_masked_entries():
    x, y = _toy(600)
    probe, info = fit_probe(x[:400], y[:400], x[400:500], y[400:500], n_out=2, multilabel=True, seed=0, cfg=FAST)
    p = probe.predict(x[500:])
    m = ~np.isnan(y[500:, 0])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[500:, 0][m], p[m, 0]) > 0.9
    assert info["weight_decay"] in FAST.weight_decays and info["epochs"] >= 1


def test_probe_is_reproducible_per_seed():
    x, y = _toy()
    a, _ = fit_probe(x[:200], y[:200], x[200:], y[200:], n_out=2, multilabel=True, seed=3, cfg=FAST)
    b, _ = fit_probe(x[:200], y[:200], x[200:], y[200:], n_out=2, multilabel=True, seed=3, cfg=FAST)
    assert np.array_equal(a.predict(x), b.predict(x))


def test_probe_targets_paper_and_standard_policies():
    df = pd.DataFrame({"a": ["present", "absent", "uncertain", None], "b": ["uncertain", None, "present", "absent"]})
    paper = probe_targets(df, ["a", "b"])
    np.testing.assert_array_equal(paper, [[1, np.nan], [0, np.nan], [np.nan, 1], [np.nan, 0]])
    std = probe_targets(df, ["a", "b"], blank="zeros", uncertain={"a": "ones", "b": "zeros"})
    np.testing.assert_array_equal(std, [[1, 0], [0, 0], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match="'maybe'"):
        probe_targets(df, ["a"], uncertain="maybe")


def test_subsample_by_patient_keeps_whole_patients_and_is_seeded():
    pids = np.repeat(np.arange(100).astype(str), 3)
    m = subsample_patients(pids, 0.1, seed=1)
    assert len(np.unique(pids[m])) == 10 and m.sum() == 30
    assert np.array_equal(m, subsample_patients(pids, 0.1, seed=1))
    assert not np.array_equal(m, subsample_patients(pids, 0.1, seed=2))
    assert subsample_patients(pids, 0.001, seed=0).sum() == 3  # at least one patient


def test_patient_in_two_splits_is_refused():
    x, y = _toy(6)
    with pytest.raises(ValueError, match="leakage"):
        ProbeData("toy", x, y, np.array(["p1", "p1", "p2", "p3", "p4", "p5"]),
                  np.array(["train", "test", "train", "val", "val", "test"]), ("a", "b"), True)


def test_run_probe_aggregates_seeds_and_nulls_fields_without_positives():
    x, y = _toy(400)
    y[300:, 1] = np.where(np.isnan(y[300:, 1]), np.nan, 0.0)  # field b: no positives on test
    splits = np.array(["train"] * 240 + ["val"] * 60 + ["test"] * 100)
    data = ProbeData("toy", x, y, np.arange(400).astype(str), splits, ("a", "b"), True)
    with pytest.warns(UserWarning, match="'b' is null"):
        res = run_probe(data, [0, 1, 2], FAST)
    m = res.metrics
    assert m["auc"]["n"] == 3 and set(m["auc"]["values"]) == {"seed0", "seed1", "seed2"}
    assert m["auc_n_fields"] == 1 and m["per_field_auc"]["b"]["mean"] is None
    assert m["auc"]["mean"] > 0.9
    with pytest.warns(UserWarning):
        low = run_probe(data, [0, 1], FAST, fraction=0.05)
    assert low.metrics["n_train"] == 12  # 5% of 240 patients, equal for every seed


def test_single_label_probe():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (np.eye(3)[y] * 2 + rng.normal(size=(300, 3))).astype(np.float32)
    splits = np.array(["train"] * 200 + ["val"] * 50 + ["test"] * 50)
    data = ProbeData("toy3", x, y, np.arange(300).astype(str), splits, ("a", "b", "c"), False)
    m = run_probe(data, [0, 1], FAST).metrics
    assert m["accuracy"]["mean"] > 0.7 and m["auc"]["mean"] > 0.85 and m["auc_n_classes"] == 3
