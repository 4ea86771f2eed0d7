"""FLA's normalised linear attention, in PyTorch: the CPU path and the reference of the Triton one.

    o_t <- o_t / (<scale q_t, sum_{s<=t} k_s> + EPS)

per sequence, without the initial state (as FLA's `normalize_output`). `dispatch.run` applies it
after the core when a caller asks for `normalize=True`; on CUDA it runs the fused kernels of
`triton_normalize`, which follow this function exactly.
"""

from __future__ import annotations

import torch

# Added to the denominator, as FLA does: a zero key sum gives a large output, not a NaN.
EPS = 1e-10


def normalize_torch(q: torch.Tensor, k: torch.Tensor, o: torch.Tensor, scale: float) -> torch.Tensor:
    """q, k: [B, T, H, K]; o: [B, T, H, V] -> o divided by the running key sum, in o's dtype (fp32 inside)."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    z = (q.to(dtype) * scale * k.to(dtype).cumsum(1)).sum(-1, keepdim=True)
    return (o.to(dtype) / (z + EPS)).to(o.dtype)
