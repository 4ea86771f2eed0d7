"""The fixed model every candidate layer is trained in (ASI-Arch's setup).

embedding -> N x [RMSNorm -> candidate layer -> residual, RMSNorm -> SwiGLU MLP -> residual]
-> RMSNorm -> LM head (tied to the embedding). Only the token-mixing layer
changes between candidates, so differences in the numbers are the layer's.

Imports only torch: `asiarch results export` copies this package into standalone files.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))


def mixer_output(result: Any) -> torch.Tensor:
    """A layer returns a tensor or a tuple whose first element is the output."""
    output = result[0] if isinstance(result, tuple | list) else result
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"the layer returned {type(output).__name__}, expected a tensor or a tuple of tensors"
        )
    return output


class Block(nn.Module):
    def __init__(self, layer_type: type[nn.Module], dim: int, heads: int, index: int) -> None:
        super().__init__()
        self.mixer_norm = RMSNorm(dim)
        self.mixer = layer_type(hidden_size=dim, num_heads=heads, layer_idx=index)
        self.mlp_norm = RMSNorm(dim)
        hidden = 64 * ((8 * dim // 3 + 63) // 64)  # SwiGLU with LLaMA's 8/3 ratio, multiple of 64
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = mixer_output(self.mixer(self.mixer_norm(x)))
        if mixed.shape != x.shape:
            raise ValueError(f"the layer returned shape {tuple(mixed.shape)} for input {tuple(x.shape)}")
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x))


class LanguageModel(nn.Module):
    def __init__(self, layer_type: type[nn.Module], vocab: int, dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(layer_type, dim, heads, i) for i in range(layers))
        self.norm = RMSNorm(dim)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embedding.weight.t()

    def layer_parameters(self) -> int:
        return sum(p.numel() for block in self.blocks for p in block.mixer.parameters())
