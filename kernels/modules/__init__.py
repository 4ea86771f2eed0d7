"""FLA's building-block modules (fla.modules), in plain PyTorch.

Same constructors, forward signatures and return conventions as
flash-linear-attention 0.5, so layer code written against `fla.modules` runs
unchanged (through the `fla` shim in asiarch.kernels.fla_compat) on a CPU.
"""

from .convolution import ShortConvolution, causal_conv1d
from .fused_norm_gate import FusedRMSNormGated, rms_norm_gated
from .l2norm import L2Norm, l2_norm, l2norm
from .layernorm import RMSNorm, rms_norm

__all__ = [
    "FusedRMSNormGated",
    "L2Norm",
    "RMSNorm",
    "ShortConvolution",
    "causal_conv1d",
    "l2_norm",
    "l2norm",
    "rms_norm",
    "rms_norm_gated",
]
