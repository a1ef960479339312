"""The comparison table: rows = backbones, columns = the paper's table columns (mean +- std over seeds).

``build_summary`` reads the detail of each backbone (``suite.run``'s result: metrics/eval/detail/<run>.json). Its JSON
is a DVC metric, so it holds the headline only: ``backbones[<row>][<column title>] = {mean, std, n}``, the data
behind each column (``data``) and ``synthetic_data``.
"""

from __future__ import annotations

import re
from typing import Any

from vivid_med.evaluate.metrics import aggregate

#: Backbones named ``<run>_seed<k>`` are pretraining seeds of ``<run>`` and get one extra row.
SEED_NAME = re.compile(r"^(?P<run>.+)_seed(?P<seed>\d+)$")

#: (column title, metrics section, metric key, n-fields key) in the order of the paper's table.
PAPER_COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("CheXpert-12 AUC", "chexpert_paper", "auc", "auc_n_fields"),
    ("CheXpert-12 F1", "chexpert_paper", "f1", "f1_n_fields"),
    ("NIH-8 AUC", "nih8", "auc", "auc_n_fields"),
    ("LIDC AUC", "lidc", "auc", None),
    ("OrganAMNIST AUC", "organamnist", "auc", None),
    ("OrganAMNIST acc", "organamnist", "accuracy", None),
)
STANDARD_COLUMNS: tuple[tuple[str, str], ...] = (("1% labels", "pct1"), ("10% labels", "pct10"), ("100% labels", "pct100"))


def _stat(stat: Any) -> dict[str, Any] | None:
    """{mean, std, n} of an aggregated metric (None where not evaluated)."""
    return {k: stat.get(k) for k in ("mean", "std", "n")} if isinstance(stat, dict) else None


def _cell(stat: Any, n_fields: Any = None, n_total: int | None = None) -> str:
    if not isinstance(stat, dict):
        return "n/a"
    if stat.get("mean") is None:
        return "null"
    s = f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    n = n_fields.get("mean") if isinstance(n_fields, dict) else n_fields
    if n is not None and n_total is not None and n < n_total:
        s += f" [{n:g}/{n_total} fields]"
    return s


def build_summary(evals: dict[str, dict]) -> tuple[str, dict]:
    """Markdown table and JSON summary from {backbone: metrics/eval/detail/<backbone>.json contents}."""
    rows: dict[str, dict] = {}
    data: dict[str, str] = {}
    md_paper, md_std = [], []
    for name, ev in sorted(evals.items()):
        row, cells = {}, []
        for title, section, key, nkey in PAPER_COLUMNS:
            sec = ev.get(section, {})
            stat = sec.get(key)
            row[title] = _stat(stat)
            cells.append(_cell(stat, sec.get(nkey) if nkey else None, sec.get("n_report_fields")))
        md_paper.append(f"| {name} | " + " | ".join(cells) + " |")
        std_cells = []
        for title, key in STANDARD_COLUMNS:
            sec = ev.get("chexpert_standard", {}).get(key, {})
            row[f"standard {title}"] = _stat(sec.get("auc"))
            std_cells.append(_cell(sec.get("auc"), sec.get("auc_n_fields"), sec.get("n_report_fields")))
        for k, v in ev.get("data", {}).items():
            data.setdefault(k, v)
        md_std.append(f"| {name} | " + " | ".join(std_cells) + " |")
        rows[name] = row

    for run, names in pretrain_seed_groups(rows).items():
        agg = aggregate({n: {t: (rows[n][t] or {}).get("mean") for t, *_ in PAPER_COLUMNS} for n in names})
        rows[f"{run} (pretraining seeds)"] = {t: _stat(stat) for t, stat in agg.items()}
        md_paper.append(f"| {run} ({len(names)} pretraining seeds) | " + " | ".join(
            _cell(agg[t]) for t, *_ in PAPER_COLUMNS) + " |")

    synthetic = sorted({d for ev in evals.values() for d in ev.get("synthetic_data", [])})
    head = "| backbone | " + " | ".join(t for t, *_ in PAPER_COLUMNS) + " |"
    lines = [
        "# Evaluation summary", "",
        *([f"**SYNTHETIC data**: {', '.join(synthetic)} come from the built-in demo cohort; these numbers show that "
           "the pipeline works and how objectives compare on it, nothing about real patients.", ""] if synthetic else []),
        "Linear probes on frozen backbones; mean ± std over probe seeds (per-seed and per-field values in",
        "metrics/eval/detail/*.json). `[k/K fields]`: the macro average was taken over k fields only (the others had",
        "no positives or no negatives on the test split; their AUC is null). null: no field or class could be scored;",
        "n/a: not evaluated.", "",
        "## Paper protocol", "", head, "|" + " --- |" * (len(PAPER_COLUMNS) + 1), *md_paper, "",
        "## Standard protocol (label fractions, blank = negative, per-field uncertain policy; macro AUC)", "",
        "| backbone | " + " | ".join(t for t, _ in STANDARD_COLUMNS) + " |",
        "|" + " --- |" * (len(STANDARD_COLUMNS) + 1), *md_std, "",
        "## Data behind each column", "",
        *[f"- **{k}**: {v}" for k, v in sorted(data.items())], "",
    ]
    return "\n".join(lines), {"backbones": rows, "data": data, "synthetic_data": synthetic}


def pretrain_seed_groups(names) -> dict[str, list[str]]:
    """{run: [its ``<run>_seed<k>`` backbones]} for runs with at least two pretraining seeds."""
    groups: dict[str, list[str]] = {}
    for n in sorted(names):
        m = SEED_NAME.match(n)
        if m:
            groups.setdefault(m["run"], []).append(n)
    return {r: ns for r, ns in groups.items() if len(ns) > 1}
