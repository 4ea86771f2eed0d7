"""A layer written the way ASI-Arch's published programs are (issue 17), for tests that must accept them.

Written for asiarch, not copied: it follows the shape of ASI-Arch's seed layer and its 106 discovered
`DeltaNet` programs (GAIR-NLP/ASI-Arch, `database/reset_dataset.py` and `data/106.json`) in every
habit that tripped asiarch up, so a test using it fails the same way a published program would:

- `from __future__ import annotations`, typing's `TYPE_CHECKING`, and an `if TYPE_CHECKING:` block
  importing `transformers.processing_utils.Unpack` and `fla.models.utils.Cache` (never executed);
- FLA utilities: `fla.layers.utils` (unpadding), `fla.modules` (ShortConvolution, RMSNorm,
  FusedRMSNormGated), `fla.modules.l2norm.l2norm` — all served by asiarch's `fla` shim;
- helpers `elu_p1`, `sum_norm`, and `_make_ix_like(input, dim)` (a parameter named `input`), used by
  a sparsemax gate over two paths;
- a chunked delta-rule kernel under a bare `@torch.compile` that casts the chunk's transform to bf16 on
  purpose (`attn = attn.to(torch.bfloat16)` then `u = attn @ v`), as ASI-Arch does because it trains
  under bf16 autocast;
- `DeltaNet.__init__` / `forward` with FLA's signature, returning `(o, None, past_key_values)`.

Variants:
- PROGRAM: as described, the way a published program arrives.
- PROGRAM_FP32: the same layer without the bf16 cast (everything else identical), to tell the
  static and loading contract apart from the precision one.
- PROGRAM_FUTURE: PROGRAM whose output also mixes in the next token; it must still be rejected.
"""

from __future__ import annotations

PROGRAM = '''# -*- coding: utf-8 -*-
"""DeltaNet with a sparsemax-gated local path (written in ASI-Arch's style for asiarch's tests)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from fla.layers.utils import get_unpad_data, index_first_axis, pad_input
from fla.modules import FusedRMSNormGated, RMSNorm, ShortConvolution
from fla.modules.l2norm import l2norm

if TYPE_CHECKING:
    from transformers.processing_utils import Unpack
    from fla.models.utils import Cache


def elu_p1(x):
    return (F.elu(x, 1.0, False) + 1.0).to(x)


def sum_norm(x):
    return (x / x.sum(-1, keepdim=True)).to(x)


def _make_ix_like(input: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """1..d along `dim`, shaped to broadcast against `input`."""
    d = input.size(dim)
    rho = torch.arange(1, d + 1, device=input.device, dtype=input.dtype)
    view = [1] * input.dim()
    view[0] = -1
    return rho.view(view).transpose(0, dim)


def sparsemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparse probabilities along `dim` (Martins & Astudillo, 2016)."""
    z = logits - logits.max(dim=dim, keepdim=True).values
    z_sorted = torch.sort(z, dim=dim, descending=True).values
    cumsum = z_sorted.cumsum(dim) - 1
    support = (_make_ix_like(z_sorted, dim) * z_sorted > cumsum).to(z.dtype)
    k = support.sum(dim=dim, keepdim=True)
    tau = (cumsum * support).sum(dim=dim, keepdim=True) / k
    return torch.clamp(z - tau, min=0)


@torch.compile
def chunk_delta_rule_bf16(q, k, v, beta, chunk_size: int = 16):
    """Chunked delta rule; q, k, v: [b, h, l, d], beta: [b, h, l]. Returns (o, final state)."""
    b, h, l, d_k = q.shape
    d_v = v.shape[-1]
    pad = (chunk_size - l % chunk_size) % chunk_size
    if pad > 0:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        beta = F.pad(beta, (0, pad))
    q = l2norm(q)
    k = l2norm(k)
    k_beta = k * beta[..., None]
    v = v * beta[..., None]
    q, k, v, k_beta = (rearrange(t, "b h (n c) d -> b h n c d", c=chunk_size) for t in (q, k, v, k_beta))
    # T = (I + tril(diag(beta) K K^T, -1))^-1 by forward substitution, one row at a time
    attn = -torch.tril(k_beta @ k.transpose(-1, -2), diagonal=-1)
    for i in range(1, chunk_size):
        row = attn[..., i, :i].clone()
        attn[..., i, :i] = row + (row.unsqueeze(-1) * attn[..., :i, :i].clone()).sum(-2)
    attn = attn + torch.eye(chunk_size, dtype=attn.dtype, device=q.device)
    attn = attn.to(torch.bfloat16)
    u = attn @ v
    w = attn @ k_beta
    state = q.new_zeros(b, h, d_k, d_v)
    o = torch.zeros_like(v)
    future = torch.triu(torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device), diagonal=1)
    for n in range(q.shape[2]):
        q_n, k_n = q[:, :, n], k[:, :, n]
        u_n = u[:, :, n] - w[:, :, n] @ state
        local = (q_n @ k_n.transpose(-1, -2)).masked_fill(future, 0)
        o[:, :, n] = q_n @ state + local @ u_n
        state = state + k_n.transpose(-1, -2) @ u_n
    o = rearrange(o, "b h n c d -> b h (n c) d")
    return o[:, :, :l], state


class DeltaNet(nn.Module):
    """Delta-rule memory mixed per head, by a sparsemax gate, with the short-conv value path."""

    def __init__(
        self,
        mode: str = "chunk",
        d_model: int = None,
        hidden_size: int = 1024,
        expand_k: float = 1.0,
        expand_v: float = 1.0,
        num_heads: int = 4,
        use_beta: bool = True,
        use_gate: bool = False,
        use_short_conv: bool = True,
        conv_size: int = 4,
        conv_bias: bool = False,
        allow_neg_eigval: bool = False,
        layer_idx: int = None,
        qk_activation: str = "silu",
        qk_norm: str = "l2",
        norm_eps: float = 1e-6,
        **kwargs,
    ) -> DeltaNet:
        super().__init__()
        if d_model is not None:
            hidden_size = d_model
        assert qk_activation in ("silu", "relu", "elu", "identity")
        assert qk_norm in ("l2", "sum")
        self.mode = mode
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.qk_activation = qk_activation
        self.qk_norm = qk_norm
        self.use_beta = use_beta
        self.use_gate = use_gate
        self.use_short_conv = use_short_conv
        self.allow_neg_eigval = allow_neg_eigval
        self.layer_idx = layer_idx
        self.key_dim = int(hidden_size * expand_k)
        self.value_dim = int(hidden_size * expand_v)
        assert self.key_dim % num_heads == 0 and self.value_dim % num_heads == 0
        self.head_k_dim = self.key_dim // num_heads
        self.head_v_dim = self.value_dim // num_heads

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        if use_beta:
            self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)
        if not use_short_conv:
            raise UserWarning("ShortConvolution is crucial to the performance; keep use_short_conv=True.")
        act = "silu" if qk_activation == "silu" else None
        self.q_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation=act)
        self.k_conv1d = ShortConvolution(self.key_dim, conv_size, bias=conv_bias, activation=act)
        self.v_conv1d = ShortConvolution(self.value_dim, conv_size, bias=conv_bias, activation="silu")
        # Two paths per head (delta memory, local value); the gate starts in favour of the memory.
        self.path_proj = nn.Linear(hidden_size, num_heads * 2, bias=True)
        with torch.no_grad():
            self.path_proj.bias.copy_(torch.tensor([1.0, -1.0]).repeat(num_heads))
        self.temperature = nn.Parameter(torch.full((num_heads,), math.log(1.0)))
        if use_gate:
            self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
            self.o_norm = FusedRMSNormGated(self.head_v_dim, eps=norm_eps)
        else:
            self.o_norm = RMSNorm(self.head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Cache] = None,
        use_cache: Optional[bool] = False,
        output_attentions: Optional[bool] = False,
        **kwargs: Unpack[Dict],
    ) -> Tuple[torch.Tensor, None, Optional[Cache]]:
        batch_size, q_len, _ = hidden_states.shape
        last_state = None
        if past_key_values is not None and len(past_key_values) > self.layer_idx:
            last_state = past_key_values[self.layer_idx]
        cu_seqlens = kwargs.get("cu_seqlens", None)
        indices = None
        if attention_mask is not None:
            indices, cu_seqlens, _ = get_unpad_data(attention_mask[:, -q_len:])
            flat = rearrange(hidden_states, "b s ... -> (b s) ...")
            hidden_states = index_first_axis(flat, indices).unsqueeze(0)

        conv_q = conv_k = conv_v = None
        if last_state is not None:
            conv_q, conv_k, conv_v = last_state["conv_state"]
        q, conv_q = self.q_conv1d(
            x=self.q_proj(hidden_states), cache=conv_q, output_final_state=use_cache, cu_seqlens=cu_seqlens
        )
        k, conv_k = self.k_conv1d(
            x=self.k_proj(hidden_states), cache=conv_k, output_final_state=use_cache, cu_seqlens=cu_seqlens
        )
        v, conv_v = self.v_conv1d(
            x=self.v_proj(hidden_states), cache=conv_v, output_final_state=use_cache, cu_seqlens=cu_seqlens
        )
        q, k = (rearrange(t, "... (h d) -> ... h d", d=self.head_k_dim) for t in (q, k))
        v = rearrange(v, "... (h d) -> ... h d", d=self.head_v_dim)
        if self.qk_activation == "relu":
            q, k = q.relu(), k.relu()
        elif self.qk_activation == "elu":
            q, k = elu_p1(q), elu_p1(k)
        if self.qk_norm == "sum":
            q, k = sum_norm(q).to(q), sum_norm(k).to(k)
        beta = self.b_proj(hidden_states).sigmoid() if self.use_beta else torch.ones_like(q[..., 0])
        if self.allow_neg_eigval:
            beta = beta * 2.0

        o, recurrent_state = chunk_delta_rule_bf16(
            q=rearrange(q, "b l h d -> b h l d"),
            k=rearrange(k, "b l h d -> b h l d"),
            v=rearrange(v, "b l h d -> b h l d"),
            beta=rearrange(beta, "b l h -> b h l"),
        )
        o = rearrange(o, "b h l d -> b l h d")
        logits = rearrange(self.path_proj(hidden_states), "b l (h p) -> b l h p", p=2)
        gate = sparsemax(logits / self.temperature.exp()[:, None], dim=-1)
        o = gate[..., 0:1] * o + gate[..., 1:2] * v
        if past_key_values is not None:
            past_key_values.update(
                recurrent_state=recurrent_state,
                conv_state=(conv_q, conv_k, conv_v),
                layer_idx=self.layer_idx,
                offset=q_len,
            )
        if self.use_gate:
            g = rearrange(self.g_proj(hidden_states), "... (h d) -> ... h d", d=self.head_v_dim)
            o = self.o_norm(o, g)
        else:
            o = self.o_norm(o)
        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))
        if indices is not None:
            o = pad_input(o.squeeze(0), indices, batch_size, q_len)
        return o, None, past_key_values
'''

PROGRAM_FP32 = PROGRAM.replace("    attn = attn.to(torch.bfloat16)\n", "")

# Reads token t + 1 into position t: a leak the causality check must still catch.
PROGRAM_FUTURE = PROGRAM.replace(
    '        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))\n',
    '        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))\n'
    "        o = o + F.pad(o[:, 1:], (0, 0, 0, 1))\n",
)

assert PROGRAM_FP32 != PROGRAM and PROGRAM_FUTURE != PROGRAM
