"""RMSNorm with FLA's fused-residual interface (fla.modules.layernorm).

FLA's RMSNorm is a Triton kernel that can also add a residual stream before
normalising ("pre-norm" blocks) and hand the sum back. The conventions copied
here, because FLA layers and models depend on them:

- the sum x + residual and the normalisation are computed in fp32, and the
  output has x's dtype;
- `prenorm=False` returns y; `prenorm=True` returns (y, residual_out), where
  residual_out = x + residual in residual's dtype, or x upcast to fp32 when no
  residual is given and `residual_in_fp32=True`, or x itself otherwise;
- `bias` is only created when elementwise_affine and bias are both true.

Plain PyTorch: autograd gives the backward, and it runs on any device.
"""

from __future__ import annotations

import torch
from torch import nn


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp32 for half precision (FLA's kernels accumulate in fp32); fp64 stays
    # fp64 so gradcheck sees the exact function.
    return torch.promote_types(dtype, torch.float32)


def add_residual(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    residual_in_fp32: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x + residual in compute precision, residual_out as FLA returns it for prenorm)."""
    compute = _compute_dtype(x.dtype)
    x_c = x.to(compute)
    if residual is not None:
        if residual.shape != x.shape:
            raise ValueError(f"residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
        x_c = x_c + residual.to(compute)
        return x_c, x_c.to(residual.dtype)
    if residual_in_fp32 and x.dtype != torch.float32:
        return x_c, x.to(torch.float32)
    return x_c, x


def rms_normalize(
    x_c: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight + bias, in x_c's (compute) dtype."""
    y = x_c * torch.rsqrt(x_c.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(x_c.dtype)
    if bias is not None:
        y = y + bias.to(x_c.dtype)
    return y


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Functional RMSNorm over the last dim (fla.modules.layernorm.rms_norm)."""
    x_c, residual_out = add_residual(x, residual, residual_in_fp32)
    y = rms_normalize(x_c, weight, bias, eps).to(x.dtype)
    return (y, residual_out) if prenorm else y


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension, optionally fused with a residual add."""

    def __init__(
        self,
        hidden_size: int,
        elementwise_affine: bool = True,
        bias: bool = False,
        eps: float = 1e-5,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.elementwise_affine = elementwise_affine
        self.eps = eps
        factory = {"device": device, "dtype": dtype}
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        if elementwise_affine:
            self.weight = nn.Parameter(torch.empty(hidden_size, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def __repr__(self) -> str:
        s = f"{self.__class__.__name__}({self.hidden_size}"
        if not self.elementwise_affine:
            s += f", elementwise_affine={self.elementwise_affine}"
        return s + f", eps={self.eps})"

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        prenorm: bool = False,
        residual_in_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return rms_norm(
            x,
            self.weight,
            self.bias,
            residual=residual,
            eps=self.eps,
            prenorm=prenorm,
            residual_in_fp32=residual_in_fp32,
        )
