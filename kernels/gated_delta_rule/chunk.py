"""Gated delta rule (Gated DeltaNet), chunked form; FLA's `chunk_gated_delta_rule`."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
    *,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S <- exp(g_t) S, then S <- S + k_t (beta_t (v_t - S^T k_t))^T, o_t = scale * S^T q_t.

    q, k: [B, T, H, K] (keys should be L2-normalised, or pass use_qk_l2norm_in_kernel);
    v: [B, T, H, V]; g (log decay), beta: [B, T, H]; initial_state: [N, H, K, V].
    Returns (o [B, T, H, V], final state [N, H, K, V] in fp32 or None unless output_final_state).
    """
    return run(
        "chunk_gated_delta_rule",
        "chunk",
        q,
        k,
        v,
        g,
        beta,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        head_first=head_first,
    )
