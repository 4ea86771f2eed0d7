"""fla.ops.simple_gla, served by asiarch.kernels.simple_gla."""

from asiarch.kernels.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla

__all__ = ["chunk_simple_gla", "fused_recurrent_simple_gla"]
