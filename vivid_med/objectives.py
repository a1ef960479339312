"""Pretraining objectives: nn.Modules that own their heads and return a dict of named loss terms.

Every objective is called as ``objective(tokens [B,1+N,D], pooled [B,D], batch) -> {"loss": total, ...}``
where ``tokens`` are the ViT's output tokens, ``pooled`` its pre-logits feature (what the probe sees) and
``batch`` holds ``states`` (LongTensor [B,F], index into STATES, -1 = null), ``target_row`` (LongTensor [B]) and,
for the online objective, ``target_text`` (list of B strings). Extra entries (accuracies) are detached.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vivid_med.fields import STATES
from vivid_med.student.projector import Projector
from vivid_med.student.spd import build_spd, orthogonality_loss

ABSENT = STATES.index("absent")
NULL_CLASS = len(STATES)  # the state classifier's 4th class


class Objective(nn.Module):
    """Base class. Objectives with query groups keep them as ``self.spd`` (export restores it for plots)."""


def _masked_ce(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over entries with target >= 0; 0 (with a graph) when none is labelled."""
    if (target >= 0).any():
        return F.cross_entropy(logits, target, ignore_index=-1)
    return logits.sum() * 0.0


class VividLoss(Objective):
    """Cached-teacher VIVID objective: SPD tokens projected into the teacher's space.

    Readout: F+1 learned queries (one per field, one for the study) attention-pool the K SPD tokens; a shared
    projector maps them to the teacher width: u [B,F+1,Dt], L2-normalised.
    - state term: logits[b,f,s] = cos(u[b,f], P[f,s]) / tau, cross-entropy against the field's state; null
      fields carry no loss when ``answerability_mask`` (else they count as absent);
    - align term: InfoNCE between u[b,F] and the batch's distinct teacher target embeddings;
    - orth term: ``orthogonality_loss`` of the SPD attention maps.
    loss = state + align_weight * align + orth_weight * orth.
    """

    def __init__(self, dim: int, prototypes: Tensor, targets: Tensor, spd: dict | str | None = None,
                 orth_weight: float = 0.02, align_weight: float = 1.0, answerability_mask: bool = True,
                 temperature: float = 0.1) -> None:
        super().__init__()
        if prototypes.ndim != 3 or prototypes.shape[1] != len(STATES) or targets.ndim != 2 \
                or targets.shape[1] != prototypes.shape[2]:
            raise ValueError(f"teacher cache shapes: prototypes {tuple(prototypes.shape)} (want [F,{len(STATES)},D]), "
                             f"targets {tuple(targets.shape)} (want [T,D])")
        n_fields, _, t_dim = prototypes.shape
        self.spd = build_spd(dim, spd)
        self.readout = nn.Parameter(torch.randn(n_fields + 1, dim) * 0.02)
        self.readout_embed = nn.Parameter(torch.randn(n_fields + 1, dim) * 0.02)
        self.projector = Projector(dim, t_dim)
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=-1), persistent=False)
        self.register_buffer("targets", F.normalize(targets.float(), dim=-1), persistent=False)
        self.orth_weight, self.align_weight = orth_weight, align_weight
        self.answerability_mask, self.temperature = answerability_mask, temperature

    def embed(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """tokens [B,N,D] -> (u [B,F+1,Dt] unit vectors in the teacher's space, SPD attention [B,G,M,N] or None)."""
        z, attn = self.spd(tokens)  # [B, K, D]
        w = torch.softmax(self.readout @ z.transpose(1, 2) / math.sqrt(z.shape[-1]), dim=-1)  # [B, F+1, K]
        h = w @ z + self.readout_embed
        return F.normalize(self.projector(h), dim=-1), attn

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        u, attn = self.embed(tokens)
        n_fields = self.prototypes.shape[0]
        logits = torch.einsum("bfd,fsd->bfs", u[:, :n_fields], self.prototypes) / self.temperature
        states = batch["states"]
        target = states if self.answerability_mask else states.masked_fill(states < 0, ABSENT)
        state = _masked_ce(logits.flatten(0, 1), target.flatten())
        rows, inverse = batch["target_row"].unique(return_inverse=True)
        align = F.cross_entropy(u[:, n_fields] @ self.targets[rows].T / self.temperature, inverse)
        out = {"state": state, "align": align}
        loss = state + self.align_weight * align
        orth = orthogonality_loss(attn)
        if orth is not None:
            out["orth"] = orth
            loss = loss + self.orth_weight * orth
        labelled = target >= 0
        out["state_acc"] = ((logits.argmax(-1) == target) & labelled).sum().detach() / labelled.sum().clamp(min=1)
        return {"loss": loss, **out}


class VividOnlineLoss(Objective):
    """The paper's objective: SPD tokens and all ViT tokens, projected to the LM width, are a soft prefix in
    front of the target JSON; ``teacher`` (``vivid_med.teacher.online.OnlineTeacherLoss``, frozen) returns the
    masked token loss. loss = teacher loss + orth_weight * orth. Frozen teacher weights are never saved."""

    def __init__(self, dim: int, teacher: nn.Module, lm_width: int, spd: dict | str | None = None,
                 orth_weight: float = 0.02) -> None:
        super().__init__()
        self.spd = build_spd(dim, spd)
        self.projector = Projector(dim, lm_width)
        self.teacher = teacher.requires_grad_(False)
        self.orth_weight = orth_weight

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        z, attn = self.spd(tokens)
        prefix = self.projector(torch.cat([z, tokens], dim=1))  # [B, K+1+N, H]
        seeds = batch["sample_seed"].tolist() if "sample_seed" in batch else None
        out = dict(self.teacher(prefix, batch["target_text"], seeds=seeds))
        orth = orthogonality_loss(attn)
        if orth is not None:
            out["tok"] = out["loss"]
            out["orth"] = orth
            out["loss"] = out["loss"] + self.orth_weight * orth
        return out


class BCELoss(Objective):
    """Multi-label BCE with a linear head on the pooled (CLS) feature: present 1, absent 0; uncertain and
    null ignored."""

    def __init__(self, dim: int, n_fields: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n_fields)

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits, states = self.head(pooled), batch["states"]
        labelled = (states == STATES.index("present")) | (states == ABSENT)
        target = (states == STATES.index("present")).float()
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = (per * labelled).sum() / labelled.sum().clamp(min=1)
        return {"loss": loss, "bce": loss.detach()}


class StateClassifierLoss(Objective):
    """No language model: a linear head on the pooled feature predicts 4 states per field (present, absent,
    uncertain, null), cross-entropy over all fields."""

    def __init__(self, dim: int, n_fields: int) -> None:
        super().__init__()
        self.n_fields = n_fields
        self.head = nn.Linear(dim, n_fields * (len(STATES) + 1))

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits = self.head(pooled).view(-1, len(STATES) + 1)
        target = batch["states"].masked_fill(batch["states"] < 0, NULL_CLASS).flatten()
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(-1) == target).float().mean().detach()
        return {"loss": loss, "state_acc": acc}


def load_online_teacher(folder: str, variant: str, options: dict[str, Any], device: str = "auto",
                        dtype: str = "float32") -> tuple[nn.Module, int]:
    """(``OnlineTeacherLoss`` around the frozen causal LM in ``folder``, its hidden width) for vivid_online;
    ``options`` go to OnlineTeacherLoss (answerability masking, field-query sampling)."""
    from vivid_med.teacher.load import load_teacher, resolve_device
    from vivid_med.teacher.online import OnlineTeacherLoss

    teacher = load_teacher(folder, variant=variant, head=True, dtype=dtype, device=str(resolve_device(device)))
    return OnlineTeacherLoss(teacher.model, teacher.tokenizer, **options), teacher.hidden_size


OBJECTIVES = ("vivid", "vivid_online", "bce", "state_classifier", "none")


def build_objective(name: str, dim: int, n_fields: int, cfg: dict[str, Any], prototypes: Tensor | None = None,
                    targets: Tensor | None = None, teacher: nn.Module | None = None,
                    lm_width: int | None = None) -> Objective | None:
    """The objective ``name`` (None for ``none``); ``cfg`` holds spd, orth_weight, align_weight, ...."""
    if name == "vivid":
        if prototypes is None or targets is None:
            raise ValueError("objective vivid needs the teacher cache (prototypes and targets)")
        return VividLoss(dim, prototypes, targets, spd=cfg.get("spd"), orth_weight=cfg.get("orth_weight", 0.02),
                         align_weight=cfg.get("align_weight", 1.0),
                         answerability_mask=cfg.get("answerability_mask", True),
                         temperature=cfg.get("temperature", 0.1))
    if name == "vivid_online":
        if teacher is None or lm_width is None:
            raise ValueError("objective vivid_online needs the online teacher and its width")
        return VividOnlineLoss(dim, teacher, lm_width, spd=cfg.get("spd"), orth_weight=cfg.get("orth_weight", 0.02))
    if name == "bce":
        return BCELoss(dim, n_fields)
    if name == "state_classifier":
        return StateClassifierLoss(dim, n_fields)
    if name == "none":
        return None
    raise ValueError(f"unknown objective {name!r}; known: {list(OBJECTIVES)}")


def select_prototypes(cache: Any, fields: tuple[str, ...]) -> Tensor:
    """The cache's prototypes as [F,3,D] in ``fields`` x STATES order (KeyError naming a missing field/state)."""
    missing = [f for f in fields if f not in cache.fields] + [s for s in STATES if s not in cache.states]
    if missing:
        raise KeyError(f"teacher cache {cache.manifest.get('variant', '')}: no prototype for {missing} "
                       f"(cache fields {list(cache.fields)}, states {list(cache.states)})")
    f_idx = torch.tensor([cache.fields.index(f) for f in fields])
    s_idx = torch.tensor([cache.states.index(s) for s in STATES])
    return cache.prototypes[f_idx][:, s_idx]
