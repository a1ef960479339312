"""Evaluate one frozen backbone with the field's protocols: the ``evaluate:`` params and ``run``.

- ``chexpert_paper``: the paper's linear probe (blank and uncertain ignored; 14 outputs, the pretraining fields
  reported), trained on train, selected on val, tested on test, over probe seeds;
- ``chexpert_standard``: label fractions of train patients, blank = negative, per-field uncertain policy;
- ``nih8``: the paper-protocol heads applied unchanged to the target set's test split on the 8 shared labels;
- one single-label probe per ``image_sets`` entry (CT, MedMNIST, real data).

``run`` returns every number (per seed, per field, with the data behind each protocol described): the stage
writes it to metrics/eval/detail/<run>.json, and ``headline`` of it to metrics/eval/<run>.json (the DVC metric).

From a notebook (the stage ``evaluate@<run>`` does exactly this)::

    from vivid_med.evaluate.suite import EvaluateParams, headline, run
    from vivid_med.params import load_fields, load_section
    detail = run("models/bce", load_section(EvaluateParams, "params.yaml", "evaluate"), load_fields("params.yaml"),
                 "data/features/bce")
    metrics = headline(detail)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from vivid_med.evaluate.features import RowView, cached_features, spd_attention_maps
from vivid_med.evaluate.metrics import rounded
from vivid_med.evaluate.plots import embedding_2d, finding_groups, roc_points, write_csv
from vivid_med.evaluate.probes import ProbeParams, UncertainPolicy, probe_targets
from vivid_med.evaluate.protocols import ProbeData, ProbeResult, run_probe, transfer_probe
from vivid_med.fields import FIELDS, NIH_SHARED_FIELDS, check_fields
from vivid_med.imaging import ImageStore
from vivid_med.io import atomic_path, failpoint
from vivid_med.params import NonNegativeInt, Seeds, StrictParams
from vivid_med.runtime import EvaluateRuntime
from vivid_med.sources import ImageSetSpec, open_dataset
from vivid_med.sources.base import check_patient_splits, is_synthetic
from vivid_med.student.export import load_student
from vivid_med.tables import read_records, synthetic_datasets

LabelFraction = Annotated[float, Field(gt=0.0, le=1.0)]
#: Sections of ``run``'s result that are not a protocol's metrics.
META_KEYS = ("backbone", "data", "synthetic_data")


class PlotParams(StrictParams):
    tsne_points: NonNegativeInt      # test images in the t-SNE plot
    attention_examples: NonNegativeInt  # test images with SPD attention maps


class EvaluateParams(StrictParams):
    """The ``evaluate:`` section; ``image_sets`` entries are dataset specs (``kind``, ``root``, options)."""

    source: str                      # CheXpert-style records (data/records/<source>.parquet)
    target: str                      # NIH-style records: transfer on the 8 shared labels
    views: list[Literal["PA", "AP", "LAT"]] | None  # None: every view
    probe_seeds: Seeds
    select_on: str                   # must be "val": hyper-parameters are never chosen on test
    label_fractions: Annotated[list[LabelFraction], Field(min_length=1)]
    uncertain_policy: UncertainPolicy | dict[str, UncertainPolicy]
    probe: ProbeParams
    image_sets: dict[str, ImageSetSpec]
    plots: PlotParams

    @field_validator("select_on")
    @classmethod
    def _select_on_val(cls, value: str) -> str:
        if value != "val":
            raise ValueError(f"probes select hyper-parameters on 'val' only, not {value!r} "
                             "(selecting on the test split leaks it)")
        return value

    @model_validator(mode="after")
    def _parts(self) -> "EvaluateParams":
        if isinstance(self.uncertain_policy, dict):
            check_fields(list(self.uncertain_policy), "uncertain_policy")
        return self


@dataclass
class LoadedRecords:
    """Records of one dataset (optionally some views only) and a lazy view of their stored images."""

    frame: pd.DataFrame
    images: RowView

    def describe(self, name: str) -> str:
        c = self.frame["split"].value_counts()
        return (f"{name}: train {c.get('train', 0)} / val {c.get('val', 0)} / test {c.get('test', 0)} images, "
                f"{self.frame['patient_id'].nunique()} patients")


def load_records(records_dir: Path, images_dir: Path, name: str, views: list[str] | None) -> LoadedRecords:
    """Records of ``records_dir/<name>.parquet`` with a stored image (leakage refused), and their images."""
    df = read_records(records_dir / f"{name}.parquet")
    if views:
        df = df[df["view"].isin(views)]
    check_patient_splits(df["patient_id"].to_numpy(), df["split"].to_numpy(), f"{records_dir}/{name}.parquet")
    store = ImageStore.open(images_dir / name)
    have = df["image_id"].isin(store.index["image_id"])
    if not have.all():
        warnings.warn(f"{name}: {int((~have).sum())} records have no stored image "
                      f"(see {images_dir / name}/rejects.parquet)")
    df = df[have].reset_index(drop=True)
    return LoadedRecords(df, RowView(store.pixels, store.rows(df["image_id"].tolist())))


def run(model_dir: str | Path, params: EvaluateParams, fields: tuple[str, ...], work_dir: str | Path,
        runtime: EvaluateRuntime = EvaluateRuntime(),
        records_dir: str | Path = "data/records", images_dir: str | Path = "data/images") -> dict[str, Any]:
    """Every protocol on the backbone in ``model_dir``; features are cached and plot data written under
    ``work_dir``. Returns the metrics (rounded, JSON-able), with the data behind each protocol described."""
    records_dir, images_dir, work_dir = Path(records_dir), Path(images_dir), Path(work_dir)
    image_sets = params.image_sets
    student = load_student(model_dir)
    model = student.backbone
    plot_dir = work_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"backbone": Path(model_dir).name, "data": {}}
    seeds, probe = list(params.probe_seeds), params.probe

    # CheXpert-style source: paper protocol (blank and uncertain ignored; 14 outputs, report the pretraining fields).
    src = load_records(records_dir, images_dir, params.source, params.views)
    extract = {"batch_size": runtime.batch_size, "device": runtime.device}
    x_src = cached_features(work_dir / f"{params.source}.npz", model, src.images, **extract)
    ids, splits = src.frame["patient_id"].to_numpy(), src.frame["split"].to_numpy()
    paper = ProbeData(params.source, x_src, probe_targets(src.frame, FIELDS), ids, splits, FIELDS, True)
    res = run_probe(paper, seeds, probe, report=fields)
    save_predictions(work_dir / "predictions" / "chexpert_paper.npz", res, fields, [FIELDS.index(f) for f in fields])
    out["chexpert_paper"] = {**res.metrics, "n_report_fields": len(fields)}
    out["data"]["chexpert_paper"] = (f"{src.describe(params.source)}; probe trained on train, selected on val, "
                                     f"tested on test; {len(fields)} fields, blank and uncertain ignored")
    reported = [FIELDS.index(f) for f in fields]
    write_csv(roc_points(res.test_labels[:, reported], res.test_scores[:, reported], fields),
              plot_dir / "roc_chexpert_paper.csv")
    test = splits == "test"
    idx, xy = embedding_2d(x_src[test], params.plots.tsne_points)
    shown = paper.labels[test][idx][:, reported]
    write_csv(pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "finding": finding_groups(shown, fields)}),
              plot_dir / "embedding.csv")
    examples = np.flatnonzero(test)[:params.plots.attention_examples]
    maps = spd_attention_maps(student, src.images[examples])
    if maps is not None:
        with atomic_path(plot_dir / "attention.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, images=src.images[examples], maps=maps)
    failpoint("evaluate:probes")

    # Standard protocol: blank = negative, per-field uncertain policy, label fractions by patient.
    std_targets = probe_targets(src.frame, FIELDS, blank="zeros", uncertain=params.uncertain_policy)
    std = ProbeData(params.source, x_src, std_targets, ids, splits, FIELDS, True)
    out["chexpert_standard"] = {}
    for f in params.label_fractions:
        std_res = run_probe(std, seeds, probe, fraction=f)
        out["chexpert_standard"][f"pct{round(100 * f):g}"] = {**std_res.metrics, "n_report_fields": len(FIELDS)}
        save_predictions(work_dir / "predictions" / f"chexpert_standard_pct{round(100 * f):g}.npz", std_res, FIELDS)
    out["data"]["chexpert_standard"] = (f"{src.describe(params.source)}; fractions of train patients "
                                        f"{params.label_fractions}, uncertain policy {params.uncertain_policy}, "
                                        "14 fields")

    # NIH-style target: the paper-protocol heads applied unchanged to the target test split, 8 shared labels.
    tgt = load_records(records_dir, images_dir, params.target, params.views)
    x_tgt = cached_features(work_dir / f"{params.target}.npz", model, tgt.images, **extract)
    t = tgt.frame["split"].to_numpy() == "test"
    nih = transfer_probe(res.probes, x_tgt[t], probe_targets(tgt.frame[t], NIH_SHARED_FIELDS),
                         tgt.frame["patient_id"].to_numpy()[t], FIELDS, NIH_SHARED_FIELDS, f"{params.target} transfer")
    save_predictions(work_dir / "predictions" / "nih8.npz", nih, NIH_SHARED_FIELDS)
    out["nih8"] = {**nih.metrics, "n_report_fields": len(NIH_SHARED_FIELDS)}
    out["data"]["nih8"] = f"{params.target} test split ({int(t.sum())} images), heads of chexpert_paper unchanged"
    write_csv(roc_points(nih.test_labels, nih.test_scores, NIH_SHARED_FIELDS), plot_dir / "roc_nih8.csv")

    # CT and other single-label sets (registered dataset kinds).
    for name, options in image_sets.items():
        s = open_dataset(options).image_set()
        empty = [sp for sp in ("train", "val", "test") if not (s.splits == sp).any()]
        if empty:
            warnings.warn(f"evaluate: {name} skipped: split(s) {empty} empty ({len(s.images)} images)")
            out["data"][name] = f"skipped: split(s) {empty} empty ({len(s.images)} images from {options.root})"
            continue
        x = cached_features(work_dir / f"{name}.npz", model, s.images, **extract)
        data = ProbeData(name, x, s.labels, s.patient_ids, s.splits, tuple(s.class_names), s.multilabel)
        set_res = run_probe(data, seeds, probe)
        out[name] = set_res.metrics
        save_predictions(work_dir / "predictions" / f"{name}.npz", set_res, tuple(s.class_names))
        out["data"][name] = f"{data.describe()}; {len(s.class_names)} classes from {options.root}"

    out["synthetic_data"] = sorted(synthetic_datasets(records_dir, (params.source, params.target)) + [
        name for name, options in image_sets.items() if is_synthetic(options.root)])
    return rounded(out)


def save_predictions(path: Path, result: ProbeResult, classes: Sequence[str], columns: list[int] | None = None) -> None:
    """Every probe seed's test scores of one protocol, for paired comparisons between backbones
    (``vivid_med.evaluate.paired.Predictions``): ``labels`` float [N, C] (NaN unlabelled; single-label sets one-hot),
    ``patient_ids`` [N], ``scores`` float32 [S, N, C], ``classes`` [C]; ``columns`` picks the reported outputs."""
    labels, scores = result.test_labels, np.stack(result.seed_scores)
    if labels.ndim == 1:  # single-label: one-hot, so that macro AUC is one-vs-rest
        labels = np.eye(scores.shape[-1], dtype=np.float32)[labels]
    if columns is not None:
        labels, scores = labels[:, columns], scores[..., columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, labels=labels.astype(np.float32), patient_ids=result.test_patient_ids.astype(str),
                            scores=scores.astype(np.float32), classes=np.array(classes))


def headline(detail: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of ``run``'s result (metrics/eval/<run>.json): each protocol's macro scores as mean and
    std over probe seeds (the paper protocol's AUC and F1, the standard protocol's AUC per label fraction, NIH-8
    AUC, each image set's AUC and accuracy) and ``synthetic_data``. The same values as in ``detail``."""
    def pick(section: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        return {k: {s: section[k][s] for s in ("mean", "std")} for k in keys if k in section}

    out = {"chexpert_paper": pick(detail["chexpert_paper"], ("auc", "f1")),
           "chexpert_standard": {pct: pick(sec, ("auc",)) for pct, sec in detail["chexpert_standard"].items()},
           "nih8": pick(detail["nih8"], ("auc",))}
    out.update({name: pick(sec, ("auc", "accuracy")) for name, sec in detail.items()
                if name not in out and name not in META_KEYS})
    return {**out, "synthetic_data": detail["synthetic_data"]}
