"""L2 normalisation along the last dimension (fla.modules.l2norm).

FLA computes y = x / sqrt(sum(x^2) + eps) in fp32 with a Triton kernel and a
hand-written backward. Here the same formula is plain PyTorch, so autograd
derives the backward and it runs on any device. Note eps sits inside the square
root and is added to the *sum* of squares (not the mean), exactly as in FLA.
"""

from __future__ import annotations

import torch
from torch import nn


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision inputs are normalised in fp32 (as FLA's kernels do); fp64
    # stays fp64 so gradcheck sees the exact function.
    return torch.promote_types(dtype, torch.float32)


def l2norm(
    x: torch.Tensor,
    eps: float = 1e-6,
    output_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Return x / sqrt(sum(x^2, -1) + eps), in `output_dtype` (default: x's dtype)."""
    x_c = x.to(_compute_dtype(x.dtype))
    y = x_c * torch.rsqrt(x_c.square().sum(-1, keepdim=True) + eps)
    return y.to(x.dtype if output_dtype is None else output_dtype)


# FLA exports both spellings.
l2_norm = l2norm


class L2Norm(nn.Module):
    """Module form of `l2norm` (fla.modules.L2Norm)."""

    def __init__(self, eps: float = 1e-6, output_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.output_dtype = output_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2norm(x, self.eps, self.output_dtype)
