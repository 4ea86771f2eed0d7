"""Linear attention, per-token reference (tests only); FLA's `naive_recurrent_linear_attn` argument order."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def naive_recurrent_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    scale: float | None = None,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token linear attention; computes in fp64 when the inputs are fp64."""
    return run(
        "naive_recurrent_linear_attn",
        "naive",
        q,
        k,
        v,
        None,
        None,
        scale,
        initial_state,
        output_final_state,
        normalize=normalize,
    )
