"""fla.modules.l2norm, served by asiarch.kernels.modules.l2norm."""

from asiarch.kernels.modules.l2norm import L2Norm, l2_norm, l2norm

__all__ = ["L2Norm", "l2_norm", "l2norm"]
