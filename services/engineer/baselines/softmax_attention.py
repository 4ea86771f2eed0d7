"""Causal softmax attention: the quadratic reference every linear design is measured against.

Scored but never selected as a parent (reference_only): it shows how far the
linear-time designs are from full attention on the same budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 256, num_heads: int = 4, **kwargs: object) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        q, k, v = rearrange(self.qkv_proj(hidden_states), "b t (s h d) -> s b h t d", s=3, h=self.num_heads)
        # Explicit scores, so the complexity check sees the T x T matrix it is meant to catch.
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        o = F.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v
        return self.o_proj(rearrange(o, "b h t d -> b t (h d)")), None
