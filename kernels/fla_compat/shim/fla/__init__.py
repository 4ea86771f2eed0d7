"""A stand-in `fla` package: flash-linear-attention's import paths, served by asiarch.kernels.

This is not FLA. It is imported only when ASIARCH_FLA_COMPAT is set (`1`:
unless a real FLA is installed and torch sees a GPU; `shim`: always; see
asiarch.kernels.fla_compat), so that research code written against FLA
(`from fla.ops.delta_rule import chunk_delta_rule`, `from fla.modules import
ShortConvolution`, ...) runs unchanged, on a CPU, on asiarch's kernels. Every
module here is a thin re-export; the code lives in asiarch.kernels. Only the
subset of FLA that asiarch implements is present.
"""

__version__ = "0.5.0+asiarch"
# Unlike FLA's Triton kernels these run on CPU tensors: `asiarch export` files check this flag.
RUNS_ON_CPU = True
