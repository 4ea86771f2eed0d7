"""Linear attention (no decay, no delta rule), chunked form; FLA's `chunk_linear_attn`."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def chunk_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    normalize: bool = True,
    head_first: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """o_t = scale * S_t^T q_t with S_t = S_{t-1} + k_t v_t^T.

    q, k: [B, T, H, K]; v: [B, T, H, V]; initial_state: [N, H, K, V]. `normalize`
    (FLA's default True) divides o_t by <scale q_t, sum_{s<=t} k_s> + 1e-10, per
    sequence, without the initial state. Returns (o [B, T, H, V], final state
    [N, H, K, V] in fp32 or None unless output_final_state).
    """
    return run(
        "chunk_linear_attn",
        "chunk",
        q,
        k,
        v,
        None,
        None,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        normalize=normalize,
        head_first=head_first,
    )
