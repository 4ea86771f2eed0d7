"""DeltaNet (Yang et al., 2024): linear attention with the delta rule.

The state is corrected toward each new value instead of accumulating:
S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T. Keys and queries pass a
short causal convolution and SiLU, then L2 normalisation (which keeps the
delta update stable); beta comes from a sigmoid projection.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from asiarch.kernels import FusedRMSNormGated, ShortConvolution, chunk_delta_rule


class DeltaNet(nn.Module):
    def __init__(
        self, hidden_size: int = 256, num_heads: int = 4, conv_size: int = 4, **kwargs: object
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.g_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.q_conv = ShortConvolution(hidden_size, conv_size, activation="silu")
        self.k_conv = ShortConvolution(hidden_size, conv_size, activation="silu")
        self.v_conv = ShortConvolution(hidden_size, conv_size, activation="silu")
        self.o_norm = FusedRMSNormGated(self.head_dim)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        q, _ = self.q_conv(self.q_proj(hidden_states))
        k, _ = self.k_conv(self.k_proj(hidden_states))
        v, _ = self.v_conv(self.v_proj(hidden_states))
        q, k, v = (rearrange(x, "b t (h d) -> b t h d", h=self.num_heads) for x in (q, k, v))
        beta = self.b_proj(hidden_states).sigmoid()
        o, _ = chunk_delta_rule(q, k, v, beta, use_qk_l2norm_in_kernel=True)
        gate = rearrange(self.g_proj(hidden_states), "b t (h d) -> b t h d", h=self.num_heads)
        o = rearrange(self.o_norm(o, gate), "b t h d -> b t (h d)")
        return self.o_proj(o), None
