"""Linear attention, recurrent form; FLA's `fused_recurrent_linear_attn`.

On CUDA this is the Triton per-token kernel; on CPU it is the same chunked
PyTorch code as the chunk form (a per-token Python loop would be far slower).
"""

from __future__ import annotations

import torch

from ..common.dispatch import run


def fused_recurrent_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    normalize: bool = False,
    head_first: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `chunk_linear_attn`, except that `normalize` defaults to False (as in FLA)."""
    return run(
        "fused_recurrent_linear_attn",
        "fused_recurrent",
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
