"""Pure-PyTorch stand-ins for FLA's modules (fla.modules), copied into `asiarch export` files.

Same rules as fallback_ops.py (whose docstring explains them); semantics are those of
kernels/modules/*.py.
"""

from __future__ import annotations

import torch


def fallback_l2norm(
    x: torch.Tensor, eps: float = 1e-6, output_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """x / sqrt(sum(x^2, -1) + eps), computed in at least fp32 (FLA's l2norm)."""
    x_c = x.to(torch.promote_types(x.dtype, torch.float32))
    y = x_c * torch.rsqrt(x_c.square().sum(-1, keepdim=True) + eps)
    return y.to(x.dtype if output_dtype is None else output_dtype)


class FallbackL2Norm(torch.nn.Module):
    def __init__(self, eps: float = 1e-6, output_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.output_dtype = output_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fallback_l2norm(x, self.eps, self.output_dtype)


def _fallback_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    residual_in_fp32: bool,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm(x + residual) in the compute dtype, residual_out as FLA's prenorm returns it)."""
    x_c = x.to(torch.promote_types(x.dtype, torch.float32))
    if residual is not None:
        x_c = x_c + residual.to(x_c.dtype)
        residual_out = x_c.to(residual.dtype)
    else:
        residual_out = x.to(torch.float32) if residual_in_fp32 and x.dtype != torch.float32 else x
    y = x_c * torch.rsqrt(x_c.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(x_c.dtype)
    if bias is not None:
        y = y + bias.to(x_c.dtype)
    return y, residual_out


class FallbackRMSNorm(torch.nn.Module):
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
        self.hidden_size, self.elementwise_affine, self.eps = hidden_size, elementwise_affine, eps
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        if elementwise_affine:
            self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
            if bias:
                self.bias = torch.nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        prenorm: bool = False,
        residual_in_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y, residual_out = _fallback_rms_norm(x, residual, residual_in_fp32, self.weight, self.bias, self.eps)
        return (y.to(x.dtype), residual_out) if prenorm else y.to(x.dtype)


class FallbackFusedRMSNormGated(torch.nn.Module):
    """RMSNorm over the last dim times act(g); act is swish/silu or sigmoid."""

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
        if activation not in ("swish", "silu", "sigmoid"):
            raise ValueError(f"Unsupported activation: {activation}")
        self.hidden_size, self.elementwise_affine, self.eps = hidden_size, elementwise_affine, eps
        self.activation = activation
        self.register_parameter("weight", None)
        if elementwise_affine:
            self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor,
        residual: torch.Tensor | None = None,
        prenorm: bool = False,
        residual_in_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y, residual_out = _fallback_rms_norm(x, residual, residual_in_fp32, self.weight, self.bias, self.eps)
        gate = g.to(y.dtype)
        y = (
            y * (torch.sigmoid(gate) if self.activation == "sigmoid" else torch.nn.functional.silu(gate))
        ).to(x.dtype)
        return (y, residual_out) if prenorm else y


class FallbackShortConvolution(torch.nn.Conv1d):
    """Causal depthwise Conv1d (weight [D, 1, W]); forward returns (y, final state [B, D, W] or None).

    The cache/state holds the last W inputs of each sequence, oldest first, as in FLA; a decoding
    call (one token per sequence, autograd off) updates a given cache in place, as FLA does.
    """

    def __init__(
        self,
        hidden_size: int,
        kernel_size: int,
        bias: bool = False,
        activation: str | None = "silu",
        backend: str | None = "triton",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(
            hidden_size,
            hidden_size,
            kernel_size,
            groups=hidden_size,
            bias=bias,
            padding=kernel_size - 1,
            device=device,
            dtype=dtype,
        )
        if activation is not None and activation not in ("silu", "swish"):
            raise ValueError(f"Activation `{activation}` not supported yet.")
        self.hidden_size, self.activation, self.backend = hidden_size, activation, backend

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
        output_final_state: bool = False,
        cu_seqlens: torch.Tensor | None = None,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if cu_seqlens is not None:
            raise NotImplementedError("ShortConvolution: cu_seqlens (packed sequences) needs FLA")
        shape = x.shape
        B, T = shape[:2]
        if mask is not None:
            x = x * mask.reshape(B, T, *([1] * (x.dim() - 2))).to(x.dtype)
        x3 = x.reshape(B, T, -1)
        D, W = x3.shape[-1], self.kernel_size[0]
        head = cache.to(x3.dtype) if cache is not None else x3.new_zeros(B, D, W)
        padded = torch.cat([head, x3.transpose(1, 2)], dim=-1)  # [B, D, W + T]
        final = padded[..., -W:].contiguous()
        compute = torch.promote_types(x.dtype, torch.float32)
        weight = self.weight.to(compute)
        y = torch.nn.functional.conv1d(
            padded[..., 1:].to(compute),
            weight,
            self.bias.to(compute) if self.bias is not None else None,
            groups=D,
        ).transpose(1, 2)
        if self.activation is not None:
            y = torch.nn.functional.silu(y)
        if residual is not None:
            y = y + residual.reshape(y.shape).to(y.dtype)
        if cache is not None and T == 1 and not torch.is_grad_enabled():
            with torch.no_grad():
                cache.copy_(final)
            final = cache
        return y.to(x.dtype).reshape(shape), (final if output_final_state else None)
