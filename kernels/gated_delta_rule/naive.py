"""Gated delta rule, per-token reference (tests only); FLA's argument order (beta before g)."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def naive_recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token gated delta rule; computes in fp64 when the inputs are fp64."""
    return run(
        "naive_recurrent_gated_delta_rule",
        "naive",
        q,
        k,
        v,
        g,
        beta,
        scale,
        initial_state,
        output_final_state,
    )
