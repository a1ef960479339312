"""Stage summarize: metrics/eval/*.json (+ plot data in data/features/<run>/plots) -> metrics/summary.md,
metrics/summary.json, metrics/plots/ (PNG + CSV). It has no parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from vivid_med.evaluate.metrics import rounded
from vivid_med.evaluate.plots import plot_attention, plot_embedding, plot_field_bars, plot_roc
from vivid_med.evaluate.summary import build_summary

EVAL_DIR, FEATURES, PLOTS = Path("metrics/eval"), Path("data/features"), Path("metrics/plots")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    evals = {p.stem: json.loads(p.read_text()) for p in sorted(EVAL_DIR.glob("*.json"))}
    if not evals:
        raise SystemExit(f"summarize: no {EVAL_DIR}/*.json (run the evaluate stages first)")
    md, summary = build_summary(evals)
    Path("metrics/summary.md").write_text(md)
    Path("metrics/summary.json").write_text(json.dumps(rounded(summary), indent=1, sort_keys=True) + "\n")

    PLOTS.mkdir(parents=True, exist_ok=True)
    bars = pd.DataFrame({b: {f: (v or {}).get("mean") for f, v in ev["chexpert_paper"]["per_field_auc"].items()}
                         for b, ev in evals.items()}).astype(float)
    bars.rename_axis("field").reset_index().to_csv(PLOTS / "per_field_auc.csv", index=False)
    plot_field_bars(bars, PLOTS / "per_field_auc.png", "CheXpert-style probe (paper protocol): test AUC per field")
    rocs = []
    for b in evals:
        for kind in ("chexpert", "nih8"):
            src = FEATURES / b / "plots" / f"roc_{kind}.csv"
            if src.exists():
                df = pd.read_csv(src)
                plot_roc(df, PLOTS / f"roc_{kind}_{b}.png", f"{b}: {kind} test ROC (probe seed 0)")
                rocs.append(df.assign(backbone=b, set=kind))
        emb = FEATURES / b / "plots" / "embedding.csv"
        if emb.exists():
            plot_embedding(pd.read_csv(emb), PLOTS / f"tsne_{b}.png", f"{b}: t-SNE of test features")
        att = FEATURES / b / "plots" / "attention.npz"
        if att.exists():
            with np.load(att) as z:
                plot_attention(z["images"], z["maps"], PLOTS / f"attention_{b}.png", f"{b}: SPD attention per group")
    if rocs:
        pd.concat(rocs).to_csv(PLOTS / "roc.csv", index=False)
    print(md)


if __name__ == "__main__":
    main()
