"""``bce``: the label-only baseline, multi-label BCE with a linear head on the pooled feature."""

from __future__ import annotations

from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vivid_med.objectives.base import OBJECTIVES, Objective, ObjectiveConfig, Resources
from vivid_med.states import State


@OBJECTIVES.register("bce")
class BCEObjective(Objective):
    """present 1, absent 0; uncertain and null ignored. loss = mean BCE over the labelled entries."""

    Config = ObjectiveConfig

    def __init__(self, dim: int, n_fields: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n_fields)

    @classmethod
    def build(cls, config: ObjectiveConfig, dim: int, resources: Resources) -> "BCEObjective":
        return cls(dim, len(resources.fields))

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits, states = self.head(pooled), batch["states"]
        present = states == State.PRESENT.code
        labelled = present | (states == State.ABSENT.code)
        per = F.binary_cross_entropy_with_logits(logits, present.float(), reduction="none")
        loss = (per * labelled).sum() / labelled.sum().clamp(min=1)
        return {"loss": loss, "bce": loss.detach()}
