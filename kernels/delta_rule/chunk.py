"""Delta rule (DeltaNet), chunked form; FLA's `chunk_delta_rule`."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
    *,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S_t = S_{t-1} + k_t (beta_t (v_t - S_{t-1}^T k_t))^T, o_t = scale * S_t^T q_t.

    q, k: [B, T, H, K] (keys should be L2-normalised, or pass use_qk_l2norm_in_kernel);
    v: [B, T, H, V]; beta: [B, T, H]; initial_state: [N, H, K, V]. Returns
    (o [B, T, H, V], final state [N, H, K, V] in fp32 or None unless output_final_state).
    """
    return run(
        "chunk_delta_rule",
        "chunk",
        q,
        k,
        v,
        None,
        beta,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        head_first=head_first,
    )
