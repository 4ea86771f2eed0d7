"""fla.modules.convolution (short causal conv), served by asiarch.kernels.modules.convolution."""

from asiarch.kernels.modules.convolution import ShortConvolution, causal_conv1d

__all__ = ["ShortConvolution", "causal_conv1d"]
