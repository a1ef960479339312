"""``vivid_online``: the paper's objective, a soft visual prefix read by the frozen language model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from vivid_med.objectives.base import OBJECTIVES, Needs, Objective, ObjectiveConfig, Resources
from vivid_med.params import NonNegativeFloat, PositiveInt, Probability
from vivid_med.student.projector import Projector
from vivid_med.student.spd import SPDParams, build_spd, orthogonality_loss


class VividOnlineConfig(ObjectiveConfig):
    teacher: Literal["pretrained", "random"]  # the LM's weights: the checkpoint's, or freshly initialised
    spd: SPDParams | Literal[False]
    orth_weight: NonNegativeFloat
    answerability_mask: bool                   # weight 0 on the state tokens of null fields
    k_fields: Annotated[list[PositiveInt], Field(min_length=1)] | None  # field-query sampling (None: all fields)
    rare_field_prob: Probability               # force one rare field with this probability


@OBJECTIVES.register("vivid_online")
class VividOnlineObjective(Objective):
    """SPD tokens and all ViT tokens, projected to the LM width, are a soft prefix in front of the target JSON;
    ``teacher`` (``vivid_med.teacher.online.OnlineTeacherLoss``, frozen) returns the masked token loss.
    loss = teacher loss + orth_weight * orth. Frozen teacher weights are never saved."""

    Config = VividOnlineConfig
    needs = Needs(language_model=True, target_text=True)

    def __init__(self, dim: int, teacher: torch.nn.Module, lm_width: int, spd: SPDParams | None,
                 orth_weight: float) -> None:
        super().__init__()
        self.spd = build_spd(dim, spd)
        self.projector = Projector(dim, lm_width)
        self.teacher = teacher.requires_grad_(False)
        self.orth_weight = orth_weight

    @classmethod
    def build(cls, config: VividOnlineConfig, dim: int, resources: Resources) -> "VividOnlineObjective":
        from vivid_med.teacher.online import OnlineTeacherLoss

        lm = resources.language_model
        teacher = OnlineTeacherLoss(lm.model, lm.tokenizer, answerability_mask=config.answerability_mask,
                                    k_fields=config.k_fields, rare_field_prob=config.rare_field_prob,
                                    seed=resources.seed)
        return cls(dim, teacher, lm.hidden_size, config.spd or None, config.orth_weight)

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
