"""fla.modules.layernorm (RMSNorm only), served by asiarch.kernels.modules.layernorm."""

from asiarch.kernels.modules.layernorm import RMSNorm, rms_norm

__all__ = ["RMSNorm", "rms_norm"]
