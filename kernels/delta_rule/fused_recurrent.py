"""Delta rule, recurrent form; FLA's `fused_recurrent_delta_rule`.

On CUDA this is the Triton per-token kernel; on CPU the chunked PyTorch code.
"""

from __future__ import annotations

import torch

from ..common.dispatch import run


def fused_recurrent_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
    *,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `chunk_delta_rule`; beta defaults to ones (as in FLA)."""
    if beta is None and isinstance(q, torch.Tensor):
        beta = torch.ones_like(q[..., 0])
    return run(
        "fused_recurrent_delta_rule",
        "fused_recurrent",
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
