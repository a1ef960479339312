"""The projector: a 2-layer MLP + LayerNorm from the ViT width to the teacher's width (method.md section 3)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


class Projector(nn.Module):
    """``forward(x [..., D_in]) -> [..., D_out]``: Linear, GELU, Linear, LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(in_dim, out_dim)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
