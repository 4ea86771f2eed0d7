"""Simple GLA / retention: S_t = exp(g_t) S_{t-1} + k_t v_t^T (FLA's fla.ops.simple_gla)."""

from .chunk import chunk_simple_gla
from .fused_recurrent import fused_recurrent_simple_gla
from .naive import naive_recurrent_simple_gla

__all__ = ["chunk_simple_gla", "fused_recurrent_simple_gla", "naive_recurrent_simple_gla"]
