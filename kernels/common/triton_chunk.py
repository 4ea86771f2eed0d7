"""The chunked algorithm with Triton kernels doing the work: `chunk_triton`, forward and backward.

Per chunk of C tokens (G = within-chunk cumulative sum of g, Gamma_ij = exp(G_i - G_j)
for i >= j, masked before the exp):

    delta rule (beta given), WY/UT form:
        A = tril(diag(beta) (K K^T * Gamma), -1),  Ai = (I + A)^{-1}
        W = Ai (beta * exp(G) * K),  U = Ai (beta * V)
        V_new = U - W S                       (V_new = V without beta)
    S <- exp(G_last) S + (K * exp(G_last - G))^T V_new
    O = scale [(Q * exp(G)) S + tril(Q K^T * Gamma) V_new]

Forward kernels (all Triton): chunk_cumsum_kernel (G), chunk_kkt_kernel (A),
solve_tril_kernel (Ai), recompute_w_u_kernel (W, U), chunk_fwd_h_kernel (the
sequential state recurrence, per-chunk states and V_new), chunk_fwd_o_kernel (O).
Backward kernels (all Triton): W, U, the states and V_new are recomputed, then
chunk_bwd_dv_local_kernel (intra-chunk dV_new), chunk_bwd_dhu_kernel (reverse state
recurrence: dS per chunk, full dV_new, dh0), chunk_bwd_dqkwg_kernel (dq, dk, dW,
per-token dG), prepare_wy_bwd_kernel (through the WY form: dk, dv, dbeta, dG, then
the reverse cumsum to dg) or, without beta, chunk_cumsum_kernel for dg. Torch only
allocates buffers, makes inputs contiguous and casts the returned gradients.
One kernel set serves all four families through tl.constexpr flags (HAS_G,
HAS_BETA, USE_INITIAL_STATE, STORE_FINAL_STATE, ...).

Saved for backward: q, k, v, G, beta, Ai and the initial state (Ai is [B, T, H, C]
fp32, like FLA's saved A).
"""

from __future__ import annotations

import torch

from asiarch.kernels.common.triton_chunk_bwd import chunk_bwd
from asiarch.kernels.common.triton_chunk_fwd import chunk_fwd_h, chunk_fwd_o, recompute_w_u, wy_inverse
from asiarch.kernels.common.triton_utils import CHUNK_SIZES, check_inputs, chunk_cumsum, empty_sequence


def _contiguous(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.contiguous() if t is not None else None


class ChunkTritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor | None,
        beta: torch.Tensor | None,
        scale: float,
        initial_state: torch.Tensor | None,
        output_final_state: bool,
        chunk_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        G = chunk_cumsum(g, chunk_size) if g is not None else None
        Ai = w = u = None
        if beta is not None:
            Ai = wy_inverse(k, G, beta, chunk_size)
            w, u = recompute_w_u(k, v, G, beta, Ai, chunk_size)
        h, v_new, ht = chunk_fwd_h(k, v, w, u, G, initial_state, output_final_state, chunk_size)
        o = chunk_fwd_o(q, k, v_new, h, G, scale, chunk_size, v.dtype)
        ctx.save_for_backward(q, k, v, G, beta, Ai, initial_state)
        ctx.scale = scale
        ctx.chunk_size = chunk_size
        ctx.g_dtype = g.dtype if g is not None else None
        return o, ht

    @staticmethod
    def backward(ctx, do: torch.Tensor, dht: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        q, k, v, G, beta, Ai, initial_state = ctx.saved_tensors
        dq, dk, dv, dg, dbeta, dh0 = chunk_bwd(
            q, k, v, G, beta, Ai, initial_state, do.contiguous(), _contiguous(dht), ctx.scale, ctx.chunk_size
        )
        return (
            dq,
            dk,
            dv,
            dg.to(ctx.g_dtype) if dg is not None else None,
            dbeta.to(beta.dtype) if dbeta is not None else None,
            None,
            dh0.to(initial_state.dtype) if dh0 is not None else None,
            None,
            None,
        )


def chunk_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The generic recurrence (see `asiarch.kernels.common`) by the chunked Triton kernels.

    q, k: [B, T, H, K]; v: [B, T, H, V]; g (per-token log decay) and beta: [B, T, H]
    or None; initial_state: [B, H, K, V] or None; chunk_size in (16, 32, 64).
    Returns o [B, T, H, V] in v's dtype and the fp32 final state [B, H, K, V] (None
    unless output_final_state). Differentiable w.r.t. q, k, v, g, beta, initial_state.
    """
    check_inputs(q, k, v, g, beta, initial_state)
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}; got {chunk_size}")
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if q.shape[1] == 0:
        return empty_sequence(q, v, initial_state, output_final_state)
    q, k, v, g, beta, initial_state = (_contiguous(t) for t in (q, k, v, g, beta, initial_state))
    return ChunkTritonFunction.apply(
        q, k, v, g, beta, float(scale), initial_state, output_final_state, chunk_size
    )
