"""Evaluation of frozen backbones: cached features, linear probes, transfer, metrics, plots, summary.

features.py  batched no-grad extraction, cached per (backbone, image set) as .npz
probes.py    masked multi-label BCE / softmax linear heads, label encodings, patient subsampling
protocols.py train / select-on-val / test over probe seeds; transfer of trained heads
metrics.py   masked AUC and F1 with null fields, single-label metrics, mean +- std over seeds
transfer.py  NIH ChestX-ray14 <-> UMS label mapping
plots.py     ROC, per-field bars, t-SNE, SPD attention (PNG + CSV)
summary.py   the comparison table (metrics/summary.md, summary.json)
suite.py     the ``evaluate:`` params and ``run``: every protocol on one backbone
"""

from vivid_med.evaluate.suite import EvaluateParams, run

__all__ = ["EvaluateParams", "run"]
