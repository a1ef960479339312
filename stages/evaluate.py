"""Stage evaluate@<run>: linear probes on the frozen backbone models/<run>/ (reads only `evaluate:`).

Writes metrics/eval/<run>.json (small, git-tracked), cached features and plot data under data/features/<run>/.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from stages._params import load_section
from vivid_med.evaluate.features import RowView, cached_features, spd_attention_maps
from vivid_med.evaluate.metrics import rounded
from vivid_med.evaluate.plots import embedding_2d, finding_groups, roc_points
from vivid_med.evaluate.probes import ProbeConfig, check_selection_split, encode_states
from vivid_med.evaluate.protocols import ProbeData, run_probe, transfer_probe
from vivid_med.fields import FIELDS, NIH_SHARED_FIELDS, check_fields
from vivid_med.imaging import ImageStore
from vivid_med.sources.base import ImageSet, check_patient_splits, is_synthetic
from vivid_med.tables import read_records, synthetic_datasets


def load_records(name: str, views: list[str] | None) -> tuple[pd.DataFrame, RowView]:
    """Records of data/records/<name>.parquet (optionally only some views) and a lazy view of their images."""
    df = read_records(Path("data/records") / f"{name}.parquet")
    if views:
        df = df[df["view"].isin(views)]
    check_patient_splits(df["patient_id"].to_numpy(), df["split"].to_numpy(), f"data/records/{name}.parquet")
    store = ImageStore.open(Path("data/images") / name)
    have = df["image_id"].isin(store.index["image_id"])
    if not have.all():
        warnings.warn(f"{name}: {int((~have).sum())} records have no stored image (see data/images/{name}/rejects.parquet)")
    df = df[have].reset_index(drop=True)
    return df, RowView(store.pixels, store.rows(df["image_id"].tolist()))


def load_image_set(spec: dict) -> ImageSet:
    """An ImageSet from an adapter named "package.module:function" called on ``spec['path']``.

    Adapters that return a richer object (LIDC's ``LidcData``) hand over its ``.images`` ImageSet.
    """
    module, fn = spec["adapter"].split(":")
    if not module.startswith("vivid_med.sources."):  # params name code to import: only the project's adapters
        raise ValueError(f"evaluate.image_sets: adapter {spec['adapter']!r} is not in vivid_med.sources")
    out = getattr(importlib.import_module(module), fn)(Path(spec["path"]), **spec.get("args", {}))
    out = out if isinstance(out, ImageSet) else getattr(out, "images", None)
    if not isinstance(out, ImageSet):
        raise TypeError(f"evaluate.image_sets: {spec['adapter']} returned no ImageSet")
    return out


def describe(df: pd.DataFrame, name: str) -> str:
    c = df["split"].value_counts()
    return (f"{name}: train {c.get('train', 0)} / val {c.get('val', 0)} / test {c.get('test', 0)} images, "
            f"{df['patient_id'].nunique()} patients")


def main(run: str) -> None:
    p = load_section("evaluate")
    check_selection_split(p.get("select_on", "val"))
    fields = check_fields(p["fields"], "evaluate.fields")
    seeds = [int(s) for s in p["probe_seeds"]]
    if isinstance(p["uncertain_policy"], dict):
        check_fields(list(p["uncertain_policy"]), "evaluate.uncertain_policy")
    cfg = ProbeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in p["probe"].items()})
    from vivid_med.student.export import load_student

    student = load_student(Path("models") / run)
    model = student.backbone
    feat_dir, plot_dir = Path("data/features") / run, Path("data/features") / run / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    out: dict = {"backbone": run, "data": {}}

    # CheXpert-style source: paper protocol (blank and uncertain ignored; 14 outputs, report 12).
    src, src_images = load_records(p["source"], p.get("views"))
    x_src = cached_features(feat_dir / f"{p['source']}.npz", model, src_images, p["batch_size"])
    ids, splits = src["patient_id"].to_numpy(), src["split"].to_numpy()
    paper = ProbeData(p["source"], x_src, encode_states(src, FIELDS), ids, splits, FIELDS, True)
    res = run_probe(paper, seeds, cfg, report=fields)
    out["chexpert_paper"] = {**res.metrics, "n_report_fields": len(fields)}
    out["data"]["chexpert_paper"] = (f"{describe(src, p['source'])}; probe trained on train, selected on val, "
                                     f"tested on test; {len(fields)} fields, blank and uncertain ignored")
    roc_points(res.test_labels, res.test_scores, FIELDS).to_csv(plot_dir / "roc_chexpert.csv", index=False)
    test = splits == "test"
    idx, xy = embedding_2d(x_src[test], int(p["plots"]["tsne_points"]))
    shown = paper.labels[test][idx][:, [FIELDS.index(f) for f in fields]]
    pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "finding": finding_groups(shown, fields)}).to_csv(
        plot_dir / "embedding.csv", index=False)
    examples = np.flatnonzero(test)[: int(p["plots"]["attention_examples"])]
    maps = spd_attention_maps(student, src_images[examples])
    if maps is not None:
        np.savez_compressed(plot_dir / "attention.npz", images=src_images[examples], maps=maps)

    # Standard protocol: blank = negative, per-field uncertain policy, label fractions by patient.
    std = ProbeData(p["source"], x_src, encode_states(src, FIELDS, blank="zeros", uncertain=p["uncertain_policy"]),
                    ids, splits, FIELDS, True)
    out["chexpert_standard"] = {
        f"pct{round(100 * f):g}": {**run_probe(std, seeds, cfg, fraction=float(f)).metrics, "n_report_fields": len(FIELDS)}
        for f in p["label_fractions"]}
    out["data"]["chexpert_standard"] = (f"{describe(src, p['source'])}; fractions of train patients "
                                        f"{p['label_fractions']}, uncertain policy {p['uncertain_policy']}, 14 fields")

    # NIH-style target: the paper-protocol heads applied unchanged to the target test split, 8 shared labels.
    tgt, tgt_images = load_records(p["target"], p.get("views"))
    x_tgt = cached_features(feat_dir / f"{p['target']}.npz", model, tgt_images, p["batch_size"])
    t = tgt["split"].to_numpy() == "test"
    nih = transfer_probe(res.probes, x_tgt[t], encode_states(tgt[t], NIH_SHARED_FIELDS), FIELDS,
                         NIH_SHARED_FIELDS, f"{p['target']} transfer")
    out["nih8"] = {**nih.metrics, "n_report_fields": len(NIH_SHARED_FIELDS)}
    out["data"]["nih8"] = f"{p['target']} test split ({int(t.sum())} images), heads of chexpert_paper unchanged"
    roc_points(nih.test_labels, nih.test_scores, NIH_SHARED_FIELDS).to_csv(plot_dir / "roc_nih8.csv", index=False)

    # CT and other single-label transfer sets (adapters in vivid_med.sources).
    for name, spec in (p.get("image_sets") or {}).items():
        s = load_image_set(spec)
        empty = [sp for sp in ("train", "val", "test") if not (s.splits == sp).any()]
        if empty:
            warnings.warn(f"evaluate: {name} skipped: split(s) {empty} empty ({len(s.images)} images)")
            out["data"][name] = f"skipped: split(s) {empty} empty ({len(s.images)} images from {spec['path']})"
            continue
        x = cached_features(feat_dir / f"{name}.npz", model, s.images, p["batch_size"])
        data = ProbeData(name, x, s.labels, s.patient_ids, s.splits, tuple(s.class_names), s.multilabel)
        out[name] = run_probe(data, seeds, cfg).metrics
        out["data"][name] = f"{data.describe()}; {len(s.class_names)} classes from {spec['path']}"

    out["synthetic_data"] = sorted(synthetic_datasets("data/records", (p["source"], p["target"])) + [
        name for name, spec in (p.get("image_sets") or {}).items() if is_synthetic(spec["path"])])
    path = Path("metrics/eval") / f"{run}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded(out), indent=1, sort_keys=True) + "\n")
    print(f"evaluate {run}: CheXpert-12 AUC {out['chexpert_paper']['auc']['mean']}, "
          f"NIH-8 AUC {out['nih8']['auc']['mean']} -> {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m stages.evaluate <run>")
    main(sys.argv[1])
