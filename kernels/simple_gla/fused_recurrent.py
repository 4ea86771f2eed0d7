"""Simple GLA / retention, recurrent form; FLA's `fused_recurrent_simple_gla`.

On CUDA this is the Triton per-token kernel; on CPU the chunked PyTorch code.
"""

from __future__ import annotations

import torch

from ..common.dispatch import run
from .chunk import resolve_gate


def fused_recurrent_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    g_gamma: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    reverse: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
    *,
    state_v_first: bool = False,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `chunk_simple_gla`; `reverse` runs the recurrence from the last token to the first."""
    gate = resolve_gate("fused_recurrent_simple_gla", q, g, g_gamma)
    return run(
        "fused_recurrent_simple_gla",
        "fused_recurrent",
        q,
        k,
        v,
        gate,
        None,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        reverse=reverse,
        state_v_first=state_v_first,
        head_first=head_first,
    )
