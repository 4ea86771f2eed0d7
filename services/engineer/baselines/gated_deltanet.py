"""Gated DeltaNet (Yang et al., 2025): the delta rule with a data-dependent forget gate.

S_t = alpha_t S_{t-1} + beta_t k_t (v_t - alpha_t S_{t-1}^T k_t)^T, with
alpha_t = exp(g_t) in (0, 1]: gating erases stale memory quickly, the delta
rule edits individual associations precisely. g follows Mamba-2's
parameterisation, g = -exp(A) * softplus(x W + dt_bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from asiarch.kernels import FusedRMSNormGated, ShortConvolution, chunk_gated_delta_rule


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
        self.a_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(num_heads).uniform_(1, 16)))
        dt = torch.exp(torch.rand(num_heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
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
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(hidden_states).float() + self.dt_bias)
        o, _ = chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
        gate = rearrange(self.g_proj(hidden_states), "b t (h d) -> b t h d", h=self.num_heads)
        o = rearrange(self.o_norm(o, gate), "b t h d -> b t (h d)")
        return self.o_proj(o), None
