"""fla.modules, served by asiarch.kernels.modules."""

from asiarch.kernels.modules import FusedRMSNormGated, L2Norm, RMSNorm, ShortConvolution

__all__ = ["FusedRMSNormGated", "L2Norm", "RMSNorm", "ShortConvolution"]
