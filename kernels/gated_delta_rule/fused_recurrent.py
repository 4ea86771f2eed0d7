"""Gated delta rule, recurrent form; FLA's `fused_recurrent_gated_delta_rule`.

On CUDA this is the Triton per-token kernel; on CPU the chunked PyTorch code.
"""

from __future__ import annotations

import torch

from ..common.dispatch import run


def fused_recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    gk: torch.Tensor | None = None,
    gv: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `chunk_gated_delta_rule`; g may be None (no decay) and beta defaults to ones.

    FLA's per-key / per-value decays gk, gv are not supported.
    """
    name = "fused_recurrent_gated_delta_rule"
    if gk is not None or gv is not None:
        hint = (
            " (to pass beta positionally, note FLA's order is q, k, v, g, gk, gv, beta)"
            if beta is None
            else ""
        )
        raise ValueError(f"{name}: per-key/per-value decays gk, gv are not supported; use g [B, T, H]{hint}")
    if beta is None and isinstance(q, torch.Tensor):
        beta = torch.ones_like(q[..., 0])
    return run(
        name,
        "fused_recurrent",
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
    )
