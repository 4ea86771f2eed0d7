"""fla.ops.delta_rule, served by asiarch.kernels.delta_rule."""

from asiarch.kernels.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule

__all__ = ["chunk_delta_rule", "fused_recurrent_delta_rule"]
