"""asiarch.kernels: linear-attention kernels (Triton on CUDA, chunked PyTorch on CPU).

Public names are imported lazily, so `import asiarch.kernels` (and the FLA
compatibility hook that runs at interpreter start-up) does not import torch
until a kernel is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "chunk_linear_attn": ".linear_attn",
    "fused_recurrent_linear_attn": ".linear_attn",
    "chunk_simple_gla": ".simple_gla",
    "fused_recurrent_simple_gla": ".simple_gla",
    "chunk_delta_rule": ".delta_rule",
    "fused_recurrent_delta_rule": ".delta_rule",
    "chunk_gated_delta_rule": ".gated_delta_rule",
    "fused_recurrent_gated_delta_rule": ".gated_delta_rule",
    "RMSNorm": ".modules",
    "FusedRMSNormGated": ".modules",
    "ShortConvolution": ".modules",
    "l2norm": ".modules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Relative to this package, so a standalone copy under another name (kernels/standalone.py) works too.
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
