"""Linear attention: S_t = S_{t-1} + k_t v_t^T, o_t = scale * S_t^T q_t (FLA's fla.ops.linear_attn)."""

from .chunk import chunk_linear_attn
from .fused_recurrent import fused_recurrent_linear_attn
from .naive import naive_recurrent_linear_attn

__all__ = ["chunk_linear_attn", "fused_recurrent_linear_attn", "naive_recurrent_linear_attn"]
