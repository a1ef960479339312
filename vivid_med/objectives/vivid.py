"""``vivid``: the cached-teacher VIVID objective (SPD tokens matched to the frozen teacher's embeddings)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vivid_med.objectives.base import OBJECTIVES, Needs, Objective, ObjectiveConfig, Resources
from vivid_med.params import NonNegativeFloat, PositiveFloat
from vivid_med.states import NULL_CODE, STATE_VALUES, State
from vivid_med.student.projector import Projector
from vivid_med.student.spd import SPDParams, build_spd, orthogonality_loss


class VividConfig(ObjectiveConfig):
    teacher: Literal["pretrained", "random"]  # the teacher cache (a member of teacher.variants)
    spd: SPDParams | Literal[False]           # query groups, or off: the mean of all tokens
    orth_weight: NonNegativeFloat
    align_weight: NonNegativeFloat
    temperature: PositiveFloat
    answerability_mask: bool                   # false: a null field counts as absent


def masked_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over entries whose target is not null; 0 (with a graph) when none is labelled."""
    if (target != NULL_CODE).any():
        return F.cross_entropy(logits, target, ignore_index=NULL_CODE)
    return logits.sum() * 0.0


def select_prototypes(cache: Any, fields: tuple[str, ...]) -> Tensor:
    """The cache's prototypes as [F,3,D] in ``fields`` x state-code order (KeyError naming a missing one)."""
    missing = [f for f in fields if f not in cache.fields] + [s for s in STATE_VALUES if s not in cache.states]
    if missing:
        raise KeyError(f"teacher cache {cache.manifest.get('variant', '')}: no prototype for {missing} "
                       f"(cache fields {list(cache.fields)}, states {list(cache.states)})")
    f_idx = torch.tensor([cache.fields.index(f) for f in fields])
    s_idx = torch.tensor([cache.states.index(s) for s in STATE_VALUES])
    return cache.prototypes[f_idx][:, s_idx]


@OBJECTIVES.register("vivid")
class VividObjective(Objective):
    """SPD tokens projected into the teacher's space, matched to its cached embeddings.

    Readout: F+1 learned queries (one per field, one for the study) attention-pool the K SPD tokens; a shared
    projector maps them to the teacher width: u [B,F+1,Dt], L2-normalised.
    - state term: logits[b,f,s] = cos(u[b,f], P[f,s]) / tau, cross-entropy against the field's state; null
      fields carry no loss when ``answerability_mask`` (else they count as absent);
    - align term: InfoNCE between u[b,F] and the batch's distinct teacher target embeddings;
    - orth term: ``orthogonality_loss`` of the SPD attention maps.
    loss = state + align_weight * align + orth_weight * orth.
    """

    Config = VividConfig
    needs = Needs(teacher_cache=True)

    def __init__(self, dim: int, prototypes: Tensor, targets: Tensor, spd: SPDParams | None, orth_weight: float,
                 align_weight: float, answerability_mask: bool, temperature: float) -> None:
        super().__init__()
        if prototypes.ndim != 3 or prototypes.shape[1] != len(STATE_VALUES) or targets.ndim != 2 \
                or targets.shape[1] != prototypes.shape[2]:
            raise ValueError(f"teacher cache shapes: prototypes {tuple(prototypes.shape)} (want "
                             f"[F,{len(STATE_VALUES)},D]), targets {tuple(targets.shape)} (want [T,D])")
        n_fields, _, t_dim = prototypes.shape
        self.spd = build_spd(dim, spd)
        self.readout = nn.Parameter(torch.randn(n_fields + 1, dim) * 0.02)
        self.readout_embed = nn.Parameter(torch.randn(n_fields + 1, dim) * 0.02)
        self.projector = Projector(dim, t_dim)
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=-1), persistent=False)
        self.register_buffer("targets", F.normalize(targets.float(), dim=-1), persistent=False)
        self.orth_weight, self.align_weight = orth_weight, align_weight
        self.answerability_mask, self.temperature = answerability_mask, temperature

    @classmethod
    def build(cls, config: VividConfig, dim: int, resources: Resources) -> "VividObjective":
        cache = resources.teacher_cache
        if tuple(cache.fields) != resources.fields:
            raise ValueError(f"fields {list(resources.fields)} differ from the teacher cache's fields "
                             f"{list(cache.fields)}: rerun the teacher stage")
        return cls(dim, select_prototypes(cache, resources.fields), cache.targets, config.spd or None,
                   config.orth_weight, config.align_weight, config.answerability_mask, config.temperature)

    def no_weight_decay(self) -> set[str]:
        """The readout queries and their embeddings are tokens: no weight decay."""
        return {"readout", "readout_embed"}

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
        target = states if self.answerability_mask else states.masked_fill(states == NULL_CODE, State.ABSENT.code)
        state = masked_cross_entropy(logits.flatten(0, 1), target.flatten())
        rows, inverse = batch["target_row"].unique(return_inverse=True)
        align = F.cross_entropy(u[:, n_fields] @ self.targets[rows].T / self.temperature, inverse)
        out = {"state": state, "align": align}
        loss = state + self.align_weight * align
        orth = orthogonality_loss(attn)
        if orth is not None:
            out["orth"] = orth
            loss = loss + self.orth_weight * orth
        labelled = target != NULL_CODE
        out["state_acc"] = ((logits.argmax(-1) == target) & labelled).sum().detach() / labelled.sum().clamp(min=1)
        return {"loss": loss, **out}
