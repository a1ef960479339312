"""Plot data (CSV) and PNGs (matplotlib, Agg): ROC curves, per-field AUC bars, t-SNE maps, SPD attention.

Every file goes through ``vivid_med.io`` (complete or absent). ``write_plots`` makes metrics/plots/: long tables
for ``dvc plots`` (the series named in a column: ``backbone``) and PNGs for people who look at files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from vivid_med.io import atomic_path, failpoint  # noqa: E402

#: FPR grid of the macro-average ROC curve (``macro_roc``).
FPR_GRID = np.linspace(0.0, 1.0, 101)
#: Protocols with ROC data (data/features/<run>/plots/roc_<protocol>.csv, written by the evaluate stage).
ROC_PROTOCOLS = ("chexpert_paper", "nih8")


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def roc_points(y: np.ndarray, scores: np.ndarray, fields: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """ROC points (field, fpr, tpr) over labelled entries of y [N, F]; fields lacking a class are skipped."""
    rows = []
    for j, f in enumerate(fields):
        m = ~np.isnan(y[:, j])
        if len(np.unique(y[m, j])) < 2:
            continue
        fpr, tpr, _ = roc_curve(y[m, j], scores[m, j])
        rows.append(pd.DataFrame({"field": f, "fpr": fpr.round(4), "tpr": tpr.round(4)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["field", "fpr", "tpr"])


def macro_roc(points: pd.DataFrame) -> pd.DataFrame:
    """The macro-average ROC curve (fpr, tpr) of per-field curves (``roc_points``): each field's TPR linearly
    interpolated on ``FPR_GRID`` (the upper point where a curve jumps vertically), averaged over fields, from (0, 0).
    Its area equals the macro AUC of the same scores within half a grid step (0.005). Empty without fields."""
    if points.empty:
        return pd.DataFrame(columns=["fpr", "tpr"])
    tpr = np.mean([np.interp(FPR_GRID, g["fpr"], g["tpr"]) for _, g in points.groupby("field", sort=False)], axis=0)
    return pd.DataFrame({"fpr": np.r_[0.0, FPR_GRID].round(2), "tpr": np.r_[0.0, tpr].round(4)})


def per_field_auc(details: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Long table (finding, backbone, auc): paper-protocol test AUC per reported field, mean over probe seeds
    (empty where the field could not be scored), from {backbone: ``suite.run`` result}."""
    return pd.DataFrame([{"finding": f, "backbone": b, "auc": (v or {}).get("mean")}
                         for b, d in details.items() for f, v in d["chexpert_paper"]["per_field_auc"].items()],
                        columns=["finding", "backbone", "auc"])


def write_plots(details: dict[str, dict[str, Any]], features: Path, out: Path) -> None:
    """metrics/plots/ into ``out``: per protocol the macro-average ROC of each backbone (roc_<protocol>.csv/.png,
    from the first probe seed's per-field ROC data in ``features``/<backbone>/plots/), per-field AUC bars
    (per_field_auc.csv/.png), and per backbone its per-field ROC curves (roc_<protocol>_<backbone>.png), t-SNE map
    and SPD attention (PNG)."""
    bars = per_field_auc(details)
    write_csv(bars, out / "per_field_auc.csv")
    plot_field_bars(bars, out / "per_field_auc.png", "CheXpert-style probe (paper protocol): test AUC per field")
    for protocol in ROC_PROTOCOLS:
        curves = []
        for b in details:
            src = features / b / "plots" / f"roc_{protocol}.csv"
            if src.exists():
                points = pd.read_csv(src)
                plot_roc(points, out / f"roc_{protocol}_{b}.png",
                         f"{b}: {protocol} test ROC per field\n(first probe seed)")
                curves.append(macro_roc(points).assign(backbone=b))
        if curves:
            macro = pd.concat(curves, ignore_index=True)[["backbone", "fpr", "tpr"]]
            write_csv(macro, out / f"roc_{protocol}.csv")
            plot_roc(macro, out / f"roc_{protocol}.png", f"{protocol}: macro-average test ROC\n(first probe seed)",
                     by="backbone")
    failpoint("summarize:plots")
    for b in details:
        emb = features / b / "plots" / "embedding.csv"
        if emb.exists():
            plot_embedding(pd.read_csv(emb), out / f"tsne_{b}.png", f"{b}: t-SNE of test features")
        att = features / b / "plots" / "attention.npz"
        if att.exists():
            with np.load(att) as z:
                plot_attention(z["images"], z["maps"], out / f"attention_{b}.png", f"{b}: SPD attention per group")


def finding_groups(y: np.ndarray, fields: tuple[str, ...] | list[str]) -> np.ndarray:
    """One colour label per image: its single present field, "none", "multiple" or "unlabelled"."""
    pos = np.nan_to_num(y, nan=0.0) == 1
    out = np.where(pos.sum(1) > 1, "multiple", "none").astype(object)
    single = pos.sum(1) == 1
    out[single] = np.asarray(fields, dtype=object)[pos[single].argmax(1)]
    out[np.isnan(y).all(1)] = "unlabelled"
    return out


def embedding_2d(features: np.ndarray, max_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE of at most ``max_points`` rows (seeded choice): (row indices [K], coordinates [K, 2])."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(features), size=min(max_points, len(features)), replace=False))
    perplexity = float(min(30, max(2, (len(idx) - 1) // 3)))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features[idx])
    return idx, xy.round(3)


def plot_roc(df: pd.DataFrame, path: Path, title: str, by: str = "field") -> None:
    """One ROC line per value of column ``by`` (df columns: ``by``, fpr, tpr)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, g in df.groupby(by, sort=False):
        ax.plot(g["fpr"], g["tpr"], lw=1, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=6, loc="lower right")
    _save(fig, path)


def plot_field_bars(bars: pd.DataFrame, path: Path, title: str) -> None:
    """Grouped bars, one group per finding and one bar per backbone, from ``per_field_auc`` (no bar where null)."""
    table = bars.pivot(index="finding", columns="backbone", values="auc").astype(float)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(table)), 4))
    width = 0.8 / max(1, table.shape[1])
    x = np.arange(len(table))
    for i, b in enumerate(table.columns):
        ax.bar(x + i * width, table[b].fillna(0).to_numpy(), width, label=b)
    ax.set_xticks(x + 0.4 - width / 2, table.index, rotation=45, ha="right", fontsize=7)
    ax.axhline(0.5, color="k", ls=":", lw=0.8)
    ax.set(ylim=(0, 1), ylabel="test AUC (mean over probe seeds)", title=title)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_embedding(df: pd.DataFrame, path: Path, title: str) -> None:
    """Scatter of df columns x, y coloured by df.finding."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, g in df.groupby("finding"):
        ax.scatter(g["x"], g["y"], s=6, label=name)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=6, markerscale=2, loc="best")
    _save(fig, path)


def plot_attention(images: np.ndarray, maps: np.ndarray, path: Path, title: str) -> None:
    """images uint8 [K, H, W]; maps [K, G, h, w] (one attention map per SPD group), overlaid per group."""
    k, g = maps.shape[:2]
    fig, axes = plt.subplots(k, g + 1, figsize=(1.6 * (g + 1), 1.6 * k), squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(images[i], cmap="gray")
        for j in range(g):
            axes[i, j + 1].imshow(images[i], cmap="gray")
            axes[i, j + 1].imshow(maps[i, j], cmap="jet", alpha=0.45, interpolation="bilinear",
                                  extent=(0, images.shape[2], images.shape[1], 0))
            if i == 0:
                axes[i, j + 1].set_title(f"group {j}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
