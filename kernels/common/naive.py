"""Per-token reference recurrence (tests only; see `asiarch.kernels.common` for the math).

This is the definition every other implementation is checked against, so it is
written for clarity, not speed: one Python step per token, no in-place updates
(autograd must be able to differentiate it for the gradient references), and it
computes in float32, or float64 when any input is float64 so tests can build a
float64 reference from the same function.
"""

from __future__ import annotations

import torch


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when any given tensor is float64, otherwise float32 (bf16/fp16 inputs are promoted)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def naive_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The generic recurrence token by token.

    q, k: [B, T, H, K]; v: [B, T, H, V]; g (log decay), beta: [B, T, H] or None;
    initial_state: [B, H, K, V] or None. Returns o [B, T, H, V] in v's dtype and the
    final state [B, H, K, V] in the compute dtype (None unless output_final_state).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    dtype = compute_dtype(q, k, v, g, beta, initial_state)
    out_dtype = v.dtype
    if scale is None:
        scale = K**-0.5
    # Split the time axis once with unbind: indexing x[:, t] inside the loop would make autograd
    # scatter every step's gradient into a full-size zero tensor, O(T^2) work in the backward.
    qs, ks, vs = (x.to(dtype).unbind(1) for x in (q, k, v))
    decays = g.to(dtype).exp()[..., None, None].unbind(1) if g is not None else None
    betas = beta.to(dtype)[..., None].unbind(1) if beta is not None else None

    S = q.new_zeros(B, H, K, V, dtype=dtype) if initial_state is None else initial_state.to(dtype)
    # (S * k).sum(-2) rather than einsum: einsum turns each step into tiny threaded BLAS calls whose
    # overhead dominates (and stalls whenever the cores are shared).
    outputs = []
    for t in range(T):
        if decays is not None:
            S = S * decays[t]
        # delta rule: write beta * (target - what the decayed state already predicts)
        update = vs[t] if betas is None else (vs[t] - (S * ks[t][..., None]).sum(-2)) * betas[t]
        # addcmul keeps one new K x V tensor per step alive for autograd, not two (the outer product too)
        S = torch.addcmul(S, ks[t][..., :, None], update[..., None, :])
        outputs.append((S * qs[t][..., None]).sum(-2) * scale)
    o = torch.stack(outputs, dim=1) if outputs else v.new_zeros(B, 0, H, V, dtype=dtype)
    return o.to(out_dtype), (S if output_final_state else None)
