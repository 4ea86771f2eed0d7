"""Gated RMSNorm: RMSNorm(x [+ residual]) * act(g) (fla.modules.fused_norm_gate).

Linear-attention layers normalise each head's output and multiply it by an
output gate computed from the input; FLA fuses both into one kernel. The
residual/prenorm conventions are those of `RMSNorm` (see layernorm.py). The
activations are FLA's: 'swish' and 'silu' (g * sigmoid(g)) and 'sigmoid'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layernorm import add_residual, rms_normalize

_ACTIVATIONS = ("swish", "silu", "sigmoid")


def _gate(g: torch.Tensor, activation: str) -> torch.Tensor:
    if activation in ("swish", "silu"):
        return F.silu(g)
    if activation == "sigmoid":
        return torch.sigmoid(g)
    raise ValueError(f"Unsupported activation: {activation}")


def rms_norm_gated(
    x: torch.Tensor,
    g: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    activation: str = "swish",
    residual: torch.Tensor | None = None,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Functional gated RMSNorm (fla.modules.fused_norm_gate.rms_norm_gated)."""
    if g.shape != x.shape:
        raise ValueError(f"gate shape {tuple(g.shape)} != x shape {tuple(x.shape)}")
    x_c, residual_out = add_residual(x, residual, residual_in_fp32)
    y = rms_normalize(x_c, weight, bias, eps) * _gate(g.to(x_c.dtype), activation)
    y = y.to(x.dtype)
    return (y, residual_out) if prenorm else y


class FusedRMSNormGated(nn.Module):
    """RMSNorm over the last dim followed by an activation-gated product with g."""

    def __init__(
        self,
        hidden_size: int,
        elementwise_affine: bool = True,
        eps: float = 1e-5,
        activation: str = "swish",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"Unsupported activation: {activation}")
        self.hidden_size = hidden_size
        self.elementwise_affine = elementwise_affine
        self.eps = eps
        self.activation = activation
        if elementwise_affine:
            self.weight = nn.Parameter(torch.empty(hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        # FLA registers a bias slot that is always empty; kept so state dicts and
        # code reading `.bias` behave the same.
        self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def __repr__(self) -> str:
        s = f"{self.__class__.__name__}({self.hidden_size}"
        if not self.elementwise_affine:
            s += f", elementwise_affine={self.elementwise_affine}"
        return s + f", eps={self.eps}, activation={self.activation})"

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor,
        residual: torch.Tensor | None = None,
        prenorm: bool = False,
        residual_in_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return rms_norm_gated(
            x,
            g,
            self.weight,
            self.bias,
            self.activation,
            residual=residual,
            eps=self.eps,
            prenorm=prenorm,
            residual_in_fp32=residual_in_fp32,
        )
