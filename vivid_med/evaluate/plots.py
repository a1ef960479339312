"""Plot data (CSV) and PNGs (matplotlib, Agg): ROC curves, per-field AUC bars, t-SNE maps, SPD attention."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


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


def plot_roc(df: pd.DataFrame, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for f, g in df.groupby("field", sort=False):
        ax.plot(g["fpr"], g["tpr"], lw=1, label=f)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=6, loc="lower right")
    _save(fig, path)


def plot_field_bars(table: pd.DataFrame, path: Path, title: str) -> None:
    """Grouped bars: table index = fields, columns = backbones, values = AUC (NaN = null)."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
