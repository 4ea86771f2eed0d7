"""fla.ops.gated_delta_rule, served by asiarch.kernels.gated_delta_rule."""

from asiarch.kernels.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

__all__ = ["chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule"]
