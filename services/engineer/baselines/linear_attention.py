"""Linear attention (Katharopoulos et al., 2020) with a normalised output.

softmax(q k^T) is replaced by phi(q) phi(k)^T, so causal attention becomes a
running sum S_t = S_{t-1} + phi(k_t) v_t^T read out as phi(q_t)^T S_t, linear
in the sequence length. phi = elu + 1 keeps the features positive;
normalising by phi(q_t)^T sum phi(k) keeps outputs on a stable scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from asiarch.kernels import RMSNorm, chunk_linear_attn


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 256, num_heads: int = 4, **kwargs: object) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_norm = RMSNorm(self.head_dim)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        q, k, v = (
            rearrange(proj(hidden_states), "b t (h d) -> b t h d", h=self.num_heads)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        q, k = F.elu(q) + 1, F.elu(k) + 1
        o, _ = chunk_linear_attn(q, k, v, normalize=True)
        o = rearrange(self.o_norm(o), "b t h d -> b t (h d)")
        return self.o_proj(o), None
