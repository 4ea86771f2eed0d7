"""Delta rule, per-token reference (tests only)."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def naive_recurrent_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token delta rule (beta defaults to ones); computes in fp64 when the inputs are fp64."""
    if beta is None and isinstance(q, torch.Tensor):
        beta = torch.ones_like(q[..., 0])
    return run(
        "naive_recurrent_delta_rule", "naive", q, k, v, None, beta, scale, initial_state, output_final_state
    )
