"""NIH label mapping and transfer columns; the summary table; plot data."""

from __future__ import annotations

import numpy as np
import pytest

from vivid_med.evaluate.metrics import aggregate, masked_auc
from vivid_med.evaluate.plots import FPR_GRID, finding_groups, macro_roc, per_field_auc, roc_points
from vivid_med.evaluate.summary import build_summary
from vivid_med.evaluate.transfer import NIH_LABELS, nih_label_matrix, shared_columns, transfer_scores
from vivid_med.fields import FIELDS, NIH_SHARED_FIELDS


def test_transfer_picks_the_shared_columns_unchanged():
    probs = np.tile(np.arange(len(FIELDS), dtype=np.float32), (2, 1))
    out = transfer_scores(probs, FIELDS)
    assert out.shape == (2, 8)
    assert [FIELDS[int(v)] for v in out[0]] == list(NIH_SHARED_FIELDS)
    with pytest.raises(ValueError, match="no output for"):
        shared_columns(("cardiomegaly",))


def test_nih_label_matrix():
    y = nih_label_matrix(["No Finding", "Effusion|Hernia", "Mass"])
    assert y.sum() == 3 and y[1, NIH_LABELS.index("Effusion")] == 1 and y[0].sum() == 0
    with pytest.raises(ValueError, match="row 1: unknown finding 'Flu'"):
        nih_label_matrix(["Mass", "Flu"])


def test_summary_table_rows_columns_and_field_counts():
    def ev(auc: list[float], n: int) -> dict:
        seeds = {f"seed{i}": {"auc": a, "auc_n_fields": n, "f1": 0.9} for i, a in enumerate(auc)}
        return {"chexpert_paper": {**aggregate(seeds), "n_report_fields": 12, "f1_n_fields": 12},
                "organamnist": aggregate({"seed0": {"auc": 0.99, "accuracy": 0.9}}),
                "data": {"chexpert_paper": "demo_mimic test"}}

    md, js = build_summary({"vivid": ev([0.8, 0.82], 12), "random_init": ev([0.6, 0.62], 11)})
    assert "| vivid | 0.810 ± 0.014 | 0.900 ± 0.000 | n/a | n/a | 0.990 ± 0.000 | 0.900 ± 0.000 |" in md
    assert "0.610 ± 0.014 [11/12 fields]" in md
    assert "- **chexpert_paper**: demo_mimic test" in md
    assert md.index("| random_init |") < md.index("| vivid |")
    assert js["backbones"]["vivid"]["CheXpert-12 AUC"] == {"mean": pytest.approx(0.81), "std": pytest.approx(0.01414, abs=1e-4), "n": 2}


def test_plot_data():
    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], np.float32)
    roc = roc_points(y, np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.9], [0.3, 0.2]]), ("a", "b"))
    assert set(roc["field"]) == {"a", "b"} and roc["tpr"].max() == 1.0
    groups = finding_groups(np.array([[1, 0], [1, 1], [0, 0], [np.nan, np.nan]], np.float32), ("a", "b"))
    assert list(groups) == ["a", "multiple", "none", "unlabelled"]


def test_macro_roc_is_the_mean_curve_and_its_area_the_macro_auc():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 4)) < [0.1, 0.3, 0.5, 0.02]).astype(np.float32)
    y[rng.random(y.shape) < 0.2] = np.nan  # unlabelled entries are left out, as by the probes
    scores = np.clip(0.3 * np.nan_to_num(y) + rng.random(y.shape), 0, None)
    fields = ("a", "b", "c", "d")
    curve = macro_roc(roc_points(y, scores, fields))
    assert list(curve.columns) == ["fpr", "tpr"] and len(curve) == len(FPR_GRID) + 1
    assert curve.iloc[0].tolist() == [0.0, 0.0] and curve.iloc[-1].tolist() == [1.0, 1.0]
    assert (np.diff(curve["fpr"]) >= 0).all() and (np.diff(curve["tpr"]) >= 0).all()
    macro = masked_auc(y, scores, fields)["macro"]
    assert abs(np.trapezoid(curve["tpr"], curve["fpr"]) - macro) <= 0.005 + 1e-4
    assert macro_roc(roc_points(y[:, :0], scores[:, :0], ())).empty


def test_per_field_auc_is_long_with_nulls_kept():
    details = {b: {"chexpert_paper": {"per_field_auc": {"a": {"mean": v}, "b": {"mean": None}}}}
               for b, v in (("vivid", 0.8), ("bce", 0.7))}
    bars = per_field_auc(details)
    assert list(bars.columns) == ["finding", "backbone", "auc"]
    assert [(r.finding, r.backbone, None if np.isnan(r.auc) else r.auc) for r in bars.itertuples()] == [
        ("a", "vivid", 0.8), ("b", "vivid", None), ("a", "bce", 0.7), ("b", "bce", None)]


def test_pretraining_seeds_are_aggregated_by_the_same_code():
    def ev(a: float) -> dict:
        return {"chexpert_paper": aggregate({"seed0": {"auc": a, "f1": 0.9}, "seed1": {"auc": a + 0.02, "f1": 0.9}})}

    md, js = build_summary({"bce_seed0": ev(0.70), "bce_seed1": ev(0.80), "vivid": ev(0.5)})
    row = js["backbones"]["bce (pretraining seeds)"]["CheXpert-12 AUC"]
    assert row == {"mean": pytest.approx(0.76), "std": pytest.approx(0.0707, abs=1e-4), "n": 2}
    assert "| bce (2 pretraining seeds) | 0.760 ± 0.071 |" in md
