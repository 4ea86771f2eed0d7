"""asiarch.kernels: linear-attention kernels (Triton on CUDA, chunked PyTorch on CPU).

Public names are imported lazily, so `import asiarch.kernels` (and the FLA
compatibility hook that runs at interpreter start-up) does not import torch
until a kernel is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "chunk_linear_attn": "asiarch.kernels.linear_attn",
    "fused_recurrent_linear_attn": "asiarch.kernels.linear_attn",
    "chunk_simple_gla": "asiarch.kernels.simple_gla",
    "fused_recurrent_simple_gla": "asiarch.kernels.simple_gla",
    "chunk_delta_rule": "asiarch.kernels.delta_rule",
    "fused_recurrent_delta_rule": "asiarch.kernels.delta_rule",
    "chunk_gated_delta_rule": "asiarch.kernels.gated_delta_rule",
    "fused_recurrent_gated_delta_rule": "asiarch.kernels.gated_delta_rule",
    "RMSNorm": "asiarch.kernels.modules",
    "FusedRMSNormGated": "asiarch.kernels.modules",
    "ShortConvolution": "asiarch.kernels.modules",
    "l2norm": "asiarch.kernels.modules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asiarch.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
