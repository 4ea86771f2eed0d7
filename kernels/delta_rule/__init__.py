"""Delta rule (DeltaNet): S_t = S_{t-1} + k_t (beta_t (v_t - S_{t-1}^T k_t))^T (FLA's fla.ops.delta_rule)."""

from .chunk import chunk_delta_rule
from .fused_recurrent import fused_recurrent_delta_rule
from .naive import naive_recurrent_delta_rule

__all__ = ["chunk_delta_rule", "fused_recurrent_delta_rule", "naive_recurrent_delta_rule"]
