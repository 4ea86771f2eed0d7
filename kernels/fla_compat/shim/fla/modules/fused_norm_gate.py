"""fla.modules.fused_norm_gate (RMS variant only), served by asiarch.kernels.modules.fused_norm_gate."""

from asiarch.kernels.modules.fused_norm_gate import FusedRMSNormGated, rms_norm_gated

__all__ = ["FusedRMSNormGated", "rms_norm_gated"]
