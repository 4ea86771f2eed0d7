"""Causal depthwise short convolution (fla.modules.convolution).

Linear-attention layers run q, k and v through a short (kernel 2-4) causal
depthwise conv1d. FLA does it in Triton; here it is F.conv1d on a left-padded
input, so autograd derives the backward (also into the initial state) and it
runs on any device.

Cache layout, as in FLA: a cache/state is [N, D, W] (W = kernel size) holding
the last W conv inputs of each sequence, oldest first. A prefill reads only
cache[..., 1:] (the W-1 inputs before its first token); a decoding step drops
cache[..., 0], appends the new input and convolves the W entries, so the two
paths give the same outputs. Sequences shorter than W keep the older entries
of the initial state in the final state.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = ("silu", "swish")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _conv_dense(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    activation: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T, D] -> (pre-residual output [B, T, D] in compute dtype, final state [B, D, W])."""
    B, T, D = x.shape
    W = weight.shape[-1]
    head = initial_state.to(x.dtype) if initial_state is not None else x.new_zeros(B, D, W)
    # [B, D, W + T]: the state's W slots, then the new inputs; the final state is
    # the last W columns whatever T is (T < W keeps older state entries).
    padded = torch.cat([head, x.transpose(1, 2)], dim=-1)
    final_state = padded[..., -W:].contiguous()
    compute = _compute_dtype(x.dtype)
    if T == 0:
        return x.new_zeros(B, 0, D, dtype=compute), final_state
    y = F.conv1d(
        padded[..., 1:].to(compute),
        weight.to(compute).unsqueeze(1),
        bias.to(compute) if bias is not None else None,
        groups=D,
    ).transpose(1, 2)
    if activation in _ACTIVATIONS:
        y = F.silu(y)
    return y, final_state


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool | None = False,
    activation: str | None = None,
    backend: str | None = "triton",
    cu_seqlens: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal depthwise conv1d: y_t = act(sum_i weight[:, i] * x_{t-W+1+i} + bias) + residual_t.

    x: [B, T, D] (or [B, T, ...], flattened to D = weight.shape[0]); weight: [D, W];
    initial_state: [N, D, W]; with cu_seqlens, B must be 1 and the N packed sequences
    are convolved independently. Returns (y like x, final state [N, D, W] or None).
    `backend` is accepted for FLA compatibility; there is one implementation.
    """
    if weight is None:
        raise ValueError("causal_conv1d needs a [D, W] weight")
    if activation is not None and activation not in _ACTIVATIONS:
        raise ValueError(f"Activation `{activation}` not supported yet.")
    shape = x.shape
    x = x.reshape(shape[0], shape[1], -1)
    if cu_seqlens is None:
        y, final_state = _conv_dense(x, weight, bias, initial_state, activation)
    else:
        if x.shape[0] != 1:
            raise ValueError(f"with cu_seqlens the batch size must be 1, got {x.shape[0]}")
        bounds = cu_seqlens.tolist()
        pieces = [
            _conv_dense(
                x[:, bos:eos],
                weight,
                bias,
                initial_state[i : i + 1] if initial_state is not None else None,
                activation,
            )
            for i, (bos, eos) in enumerate(itertools.pairwise(bounds))
        ]
        y = torch.cat([p[0] for p in pieces], dim=1)
        final_state = torch.cat([p[1] for p in pieces], dim=0)
    if residual is not None:
        y = y + residual.reshape(y.shape).to(y.dtype)
    return y.to(x.dtype).reshape(shape), (final_state if output_final_state else None)


class ShortConvolution(nn.Conv1d):
    """Depthwise causal Conv1d with FLA's decoding cache (weight [D, 1, W], as nn.Conv1d)."""

    def __init__(
        self,
        hidden_size: int,
        kernel_size: int,
        bias: bool = False,
        activation: str | None = "silu",
        backend: str | None = "triton",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            in_channels=hidden_size,
            out_channels=hidden_size,
            kernel_size=kernel_size,
            groups=hidden_size,
            bias=bias,
            padding=kernel_size - 1,
            device=device,
            dtype=dtype,
        )
        if activation is not None and activation not in _ACTIVATIONS:
            raise ValueError(f"Activation `{activation}` not supported yet.")
        self.hidden_size = hidden_size
        self.activation = activation
        # Kept (with FLA's env override) because FLA layers compare the backends of
        # their convs; every backend runs the same code here.
        self.backend = os.environ.get("FLA_CONV_BACKEND", backend)
        if self.backend not in ("cuda", "triton"):
            raise ValueError(f"Invalid backend: {self.backend}, must be one of ['cuda', 'triton']")

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.activation is not None:
            s += f", activation={self.activation}"
        return s + f", backend={self.backend}"

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
        output_final_state: bool = False,
        cu_seqlens: torch.LongTensor | None = None,
        chunk_indices: torch.LongTensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, T, D]; mask: [B, T] zeroes padded inputs; cache: [N, D, W].

        Returns (y [B, T, D], final state [N, D, W] if output_final_state else None).
        One token per sequence without autograd takes the decoding `step`, which,
        like FLA, updates a given cache in place.
        """
        B, T = x.shape[:2]
        N = B if cu_seqlens is None else len(cu_seqlens) - 1
        if mask is not None:
            if cu_seqlens is not None:
                raise ValueError("`mask` and `cu_seqlens` cannot be provided at the same time")
            # FLA multiplies in place (x.mul_); out of place leaves the caller's tensor alone.
            x = x * mask.reshape(B, T, *([1] * (x.ndim - 2))).to(x.dtype)
        one_token_each = B * T == N and (cu_seqlens is None or bool((cu_seqlens.diff() == 1).all()))
        if not torch.is_grad_enabled() and one_token_each:
            return self.step(x, residual, cache, output_final_state=output_final_state, cu_seqlens=cu_seqlens)
        return causal_conv1d(
            x=x,
            weight=self.weight.squeeze(1),
            bias=self.bias,
            residual=residual,
            initial_state=cache,
            output_final_state=output_final_state,
            activation=self.activation,
            cu_seqlens=cu_seqlens,
        )

    def step(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        cache: torch.Tensor | None,
        output_final_state: bool = False,
        cu_seqlens: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode one token per sequence: x [B, 1, D] (or [1, N, D] with cu_seqlens)."""
        shape = x.shape
        W = self.kernel_size[0]
        N = shape[0] if cu_seqlens is None else len(cu_seqlens) - 1
        x_flat = x.reshape(N, -1)
        if cache is None:
            cache = x.new_zeros(N, x_flat.shape[-1], W)
        window = torch.cat([cache[..., 1:], x_flat.unsqueeze(-1).to(cache.dtype)], dim=-1)
        compute = _compute_dtype(x.dtype)
        y = (window.to(compute) * self.weight.squeeze(1).to(compute)).sum(-1)
        if self.bias is not None:
            y = y + self.bias.to(compute)
        if self.activation is not None:
            y = F.silu(y)
        y = y.reshape(shape)
        if residual is not None:
            y = y + residual.to(compute)
        # FLA's decoding updates the cache in place; callers rely on it when they
        # keep the same tensor in their Cache.
        with torch.no_grad():
            cache.copy_(window)
        return y.to(x.dtype), (cache if output_final_state else None)

    @property
    def state_size(self) -> int:
        return self.hidden_size * self.kernel_size[0]
