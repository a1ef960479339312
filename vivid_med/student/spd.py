"""Structured Prediction Decomposition (SPD): G groups x M learned queries over all ViT tokens.

Each group is its own multi-head cross-attention (own query, key, value and output weights); its M
queries attend over every ViT token. The orthogonality term pushes groups to look at different tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vivid_med.params import PositiveInt, StrictParams


class SPDParams(StrictParams):
    """The query groups of a run (``spd:`` in params): G groups x M queries, each group with H heads."""

    groups: PositiveInt
    queries: PositiveInt
    heads: PositiveInt


class SPD(nn.Module):
    """``forward(tokens [B,N,D]) -> (out [B,G*M,D], attn [B,G,M,N])`` (attention averaged over heads).

    Group g, head h: attn = softmax_n(q_gh . (W_k x_n)_h / sqrt(dh)), out_gh = sum_n attn_n (W_v x_n)_h, then the
    group's output projection. The queries are learned constants, so the keys are folded into the queries
    (q . W_k x = (W_k^T q) . x) and the values applied after pooling (W_v sum_n a_n x_n): the same function
    as a standard multi-head cross-attention, at O(N*D) per query instead of O(N*D^2) per group.
    """

    def __init__(self, dim: int, groups: int = 4, queries: int = 2, heads: int = 4) -> None:
        super().__init__()
        if groups < 1 or queries < 1:
            raise ValueError(f"SPD needs groups >= 1 and queries >= 1, got groups={groups} queries={queries}")
        if dim % heads:
            raise ValueError(f"SPD: width {dim} is not divisible by heads={heads}")
        self.groups, self.n_queries, self.heads, self.dim = groups, queries, heads, dim
        self.queries = nn.Parameter(torch.randn(groups, queries, dim) * 0.02)
        self.norm_kv = nn.LayerNorm(dim)
        # Per-group projections, stacked on a leading group axis: [G, D_in, D_out]. (A key bias would add the
        # same number to every token's logit: softmax ignores it, so there is none.)
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Parameter(torch.empty(groups, dim, dim)) for _ in range(4))
        self.b_q, self.b_v, self.b_o = (nn.Parameter(torch.zeros(groups, dim)) for _ in range(3))
        self.norm_out = nn.LayerNorm(dim)
        bound = math.sqrt(6 / (2 * dim))
        for w in (self.w_q, self.w_k, self.w_v, self.w_o):
            nn.init.uniform_(w, -bound, bound)

    def no_weight_decay(self) -> set[str]:
        """Learned query tokens and the per-group biases take no weight decay (timm's convention)."""
        return {"queries", "b_q", "b_v", "b_o"}

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        b, n, d = tokens.shape
        g, m, h = self.groups, self.n_queries, self.heads
        dh = d // h
        x = self.norm_kv(tokens)
        q = (torch.einsum("gmd,gde->gme", self.queries, self.w_q) + self.b_q[:, None]).view(g, m, h, dh)
        q_in_x = torch.einsum("gmhe,gdhe->ghmd", q, self.w_k.view(g, d, h, dh)) / math.sqrt(dh)  # [G, H, M, D]
        logits = (q_in_x.reshape(1, g * h * m, d) @ x.transpose(1, 2)).view(b, g, h, m, n)
        attn = torch.softmax(logits, dim=-1)  # [B, G, H, M, N]
        pooled = (attn.reshape(b, g * h * m, n) @ x).view(b, g, h, m, d)  # [B, G, H, M, D]
        out = torch.einsum("bghmd,gdhe->bgmhe", pooled, self.w_v.view(g, d, h, dh)).reshape(b, g, m, d)
        out = torch.einsum("bgmd,gde->bgme", out + self.b_v[:, None], self.w_o) + self.b_o[None, :, None]
        return self.norm_out(out.reshape(b, g * m, d)), attn.mean(dim=2)


class PooledTokens(nn.Module):
    """The "without SPD" arm: one token, the mean of all ViT tokens. ``forward([B,N,D]) -> ([B,1,D], None)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> tuple[Tensor, None]:
        return self.norm_out(tokens.mean(dim=1, keepdim=True)), None


def orthogonality_loss(attn: Tensor | None) -> Tensor | None:
    """Mean |cos| over all pairs of groups between the groups' mean attention maps.

    attn: [B, G, M, N]. Each group's map is the mean over its M queries ([B, G, N]); the loss is the mean over
    the batch and the G(G-1)/2 pairs. Attention is non-negative, so 0 means disjoint tokens. None if no SPD;
    0 for a single group.
    """
    if attn is None:
        return None
    g = attn.shape[1]
    if g < 2:
        return attn.new_zeros(())
    maps = F.normalize(attn.mean(dim=2), dim=-1)
    cos = maps @ maps.transpose(1, 2)  # [B, G, G]
    i, j = torch.triu_indices(g, g, offset=1, device=attn.device)
    return cos[:, i, j].abs().mean()


def build_spd(dim: int, spd: SPDParams | None) -> SPD | PooledTokens:
    """The query groups of ``spd``, or (None: SPD off) the mean of all tokens."""
    return PooledTokens(dim) if spd is None else SPD(dim, spd.groups, spd.queries, spd.heads)
