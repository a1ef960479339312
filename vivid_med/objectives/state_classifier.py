"""``state_classifier``: the same structured labels as ``vivid``, with no language model at all."""

from __future__ import annotations

from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vivid_med.objectives.base import OBJECTIVES, Objective, ObjectiveConfig, Resources
from vivid_med.states import NULL_CODE


@OBJECTIVES.register("state_classifier")
class StateClassifierObjective(Objective):
    """A linear head on the pooled feature predicts 4 classes per field (the state codes: present, absent,
    uncertain, null); cross-entropy over all fields."""

    Config = ObjectiveConfig

    def __init__(self, dim: int, n_fields: int) -> None:
        super().__init__()
        self.n_fields = n_fields
        self.head = nn.Linear(dim, n_fields * (NULL_CODE + 1))

    @classmethod
    def build(cls, config: ObjectiveConfig, dim: int, resources: Resources) -> "StateClassifierObjective":
        return cls(dim, len(resources.fields))

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits = self.head(pooled).view(-1, NULL_CODE + 1)
        target = batch["states"].flatten()
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(-1) == target).float().mean().detach()
        return {"loss": loss, "state_acc": acc}
