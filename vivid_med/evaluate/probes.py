"""Linear probes on cached features: masked multi-label BCE and single-label softmax heads.

Hyper-parameters (weight decay, number of epochs) are chosen on validation data only; the test split
is never seen by :func:`fit_probe`.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Literal, get_args

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vivid_med.params import NonNegativeFloat, PositiveFloat, PositiveInt, StrictParams
from vivid_med.states import State

UncertainPolicy = Literal["ignore", "ones", "zeros"]
UNCERTAIN_POLICIES: tuple[str, ...] = get_args(UncertainPolicy)
#: The binary probe target of an answerable state (uncertain follows a policy; null is ignored or 0).
TARGET_OF_STATE = {State.PRESENT.value: 1.0, State.ABSENT.value: 0.0}


class ProbeParams(StrictParams):
    """Search space and schedule of a linear probe (``evaluate.probe``: AdamW, mini-batches, early stopping on
    the val loss; the weight decay is chosen on val)."""

    weight_decays: Annotated[list[NonNegativeFloat], Field(min_length=1)]
    lr: PositiveFloat
    max_epochs: PositiveInt
    patience: PositiveInt
    batch_size: PositiveInt


class LinearProbe(nn.Module):
    """Feature standardisation + one linear layer: [B, D] -> logits [B, C]."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, n_out: int, multilabel: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.head = nn.Linear(len(mean), n_out)
        self.multilabel = multilabel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [N, C]: sigmoid per output (multi-label) or softmax over classes."""
        logits = self(torch.as_tensor(x, dtype=torch.float32))
        return (torch.sigmoid(logits) if self.multilabel else logits.softmax(-1)).numpy()


def probe_loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Masked BCE averaged over labelled entries (y NaN = ignored), or cross-entropy."""
    if not multilabel:
        return F.cross_entropy(logits, y)
    m = ~torch.isnan(y)
    if not m.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[m], y[m])


def _train_one(probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
               wd: float, cfg: ProbeParams, seed: int) -> tuple[LinearProbe, float, int]:
    """Train with early stopping on the val loss; returns (best probe, best val loss, epochs)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=wd)
    best, best_loss, best_epoch = copy.deepcopy(probe.state_dict()), math.inf, 0
    for epoch in range(1, cfg.max_epochs + 1):
        probe.train()
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            loss = probe_loss(probe(x[idx]), y[idx], probe.multilabel)
            opt.zero_grad()
            loss.backward()
            opt.step()
        probe.eval()
        with torch.no_grad():
            val = float(probe_loss(probe(xv), yv, probe.multilabel))
        if val < best_loss - 1e-5:
            best, best_loss, best_epoch = copy.deepcopy(probe.state_dict()), val, epoch
        elif epoch - best_epoch >= cfg.patience:
            break
    probe.load_state_dict(best)
    return probe, best_loss, best_epoch


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
              n_out: int, multilabel: bool, seed: int, cfg: ProbeParams) -> tuple[LinearProbe, dict]:
    """Fit a linear head on features [N, D]; weight decay and epochs chosen on the val loss.

    Multi-label y: float [N, C] with NaN = ignored (masked BCE). Single-label y: int [N] (cross-entropy).
    Returns the probe and {"weight_decay", "epochs", "val_loss"}.
    """
    if len(x_val) == 0:
        raise ValueError("probe: the validation split is empty; hyper-parameters are chosen on val only")
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    ydt = torch.float32 if multilabel else torch.long
    x, xv = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(x_val, dtype=torch.float32)
    y, yv = torch.as_tensor(y_train, dtype=ydt), torch.as_tensor(y_val, dtype=ydt)
    best: tuple[LinearProbe, float, int, float] | None = None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a linear head's ops are tiny: extra threads only add synchronisation
    try:
        for wd in cfg.weight_decays:
            torch.manual_seed(seed)
            probe, loss, epochs = _train_one(LinearProbe(mean, std, n_out, multilabel), x, y, xv, yv, wd, cfg, seed)
            if best is None or loss < best[1]:
                best = (probe, loss, epochs, wd)
    finally:
        torch.set_num_threads(threads)
    probe, loss, epochs, wd = best
    return probe, {"weight_decay": wd, "epochs": epochs, "val_loss": loss}


def probe_targets(records: pd.DataFrame, fields: tuple[str, ...] | list[str], *, blank: str = "ignore",
                  uncertain: str | dict[str, str] = "ignore") -> np.ndarray:
    """Field-state columns -> binary probe targets float32 [N, F]: present 1, absent 0, NaN = ignored.

    blank (null): "ignore" (the paper) or "zeros" (the usual CheXpert practice). uncertain: one policy
    for all fields or a {field: policy} dict (missing fields: "ignore"); policies in UNCERTAIN_POLICIES.
    """
    out = np.full((len(records), len(fields)), np.nan, dtype=np.float32)
    for j, f in enumerate(fields):
        pol = uncertain.get(f, "ignore") if isinstance(uncertain, dict) else uncertain
        if pol not in UNCERTAIN_POLICIES or blank not in ("ignore", "zeros"):
            raise ValueError(f"field {f!r}: uncertain policy {pol!r} / blank policy {blank!r} unknown")
        col = records[f]
        out[:, j] = col.map(TARGET_OF_STATE).astype("float32").to_numpy()
        if pol != "ignore":
            out[(col == State.UNCERTAIN.value).to_numpy(), j] = 1.0 if pol == "ones" else 0.0
        if blank == "zeros":
            out[col.isna().to_numpy(), j] = 0.0
    return out


def subsample_patients(patient_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Bool mask [N] keeping all images of a seeded random ``fraction`` of patients (at least one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction {fraction} not in (0, 1]")
    patients = np.unique(patient_ids.astype(str))
    k = max(1, int(round(fraction * len(patients))))
    keep = np.random.default_rng(seed).choice(patients, size=k, replace=False)
    return np.isin(patient_ids.astype(str), keep)
