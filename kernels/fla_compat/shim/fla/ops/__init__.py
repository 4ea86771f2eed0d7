"""fla.ops: the linear-attention kernels (asiarch.kernels), loaded on first use."""

from typing import Any

__all__ = [
    "chunk_delta_rule",
    "chunk_gated_delta_rule",
    "chunk_linear_attn",
    "chunk_simple_gla",
    "fused_recurrent_delta_rule",
    "fused_recurrent_gated_delta_rule",
    "fused_recurrent_linear_attn",
    "fused_recurrent_simple_gla",
]


def __getattr__(name: str) -> Any:
    # Lazy, so importing one family (fla.ops.delta_rule) does not load the others.
    if name not in __all__:
        raise AttributeError(f"module 'fla.ops' has no attribute {name!r}")
    import asiarch.kernels

    return getattr(asiarch.kernels, name)
