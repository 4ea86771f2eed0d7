"""Simple GLA, per-token reference (tests only); FLA's `naive_recurrent_simple_gla` argument order."""

from __future__ import annotations

import torch

from ..common.dispatch import run
from .chunk import resolve_gate


def naive_recurrent_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    *,
    g_gamma: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token simple GLA; computes in fp64 when the inputs are fp64."""
    gate = resolve_gate("naive_recurrent_simple_gla", q, g, g_gamma)
    return run(
        "naive_recurrent_simple_gla", "naive", q, k, v, gate, None, scale, initial_state, output_final_state
    )
