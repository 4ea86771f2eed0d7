"""`fused_recurrent_triton`: the per-token recurrence in one Triton kernel, with a Triton backward.

One program per (V-block, b*h) keeps its [K, BV] slice of the state in registers
and walks the tokens (like FLA's fused_recurrent kernels). Per token t:

    S~ = exp(g_t) S;  r_t = v_t - S~^T k_t;  u_t = beta_t r_t (u_t = v_t without beta)
    S = S~ + k_t u_t^T;  o_t = scale S^T q_t

Backward, three passes over the tokens (all Triton; torch only sums the per-V-block
partials of dq, dk, dbeta and dg, as FLA does):
1. replay forward: dq_t = scale S_t do_t, and q_t.dq_t (= o_t.do_t) for dg;
2. reverse: dS += scale q_t do_t^T; du = dS^T k_t; dk_t = dS u_t; dv_t = beta du;
   dbeta_t = du.r_t; dS -= k_t dv_t^T (delta rule); dS *= exp(g_t); the dg below; dh0;
3. (delta rule only) replay forward: dk_t -= S~_t dv_t.
dg needs no per-token state: with phi_t = <S_t, dS_t> one finds
dg_t = <S~_t, dS~_t> = o_t.do_t - v_t.dv_t + dg_{t+1} and dg_{T+1} = <S_T, dS_T>, i.e. a
reverse running sum the reverse pass keeps in a register.
The forward saves r (delta rule) and the final state for the backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from asiarch.kernels.common.triton_utils import check_inputs, empty_sequence


@triton.jit
def _token(ptr, bos, t, D: tl.constexpr, H: tl.constexpr, o, m):
    """Row t of the (b, h) slice of a [B, T, H, D] tensor, as fp32."""
    return tl.load(ptr + (bos + t * H) * D + o, mask=m, other=0.0).to(tl.float32)


@triton.jit
def fused_recurrent_fwd_kernel(
    q, k, v, g, beta, o, h0, ht, r, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_G: tl.constexpr, HAS_BETA: tl.constexpr, USE_INITIAL_STATE: tl.constexpr,
    STORE_FINAL_STATE: tl.constexpr, STORE_RESIDUAL: tl.constexpr,
):  # fmt: skip
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += tl.load(h0 + p_h, mask=m_h, other=0.0).to(tl.float32)
    for t in range(T):
        b_q = _token(q, bos, t, K, H, o_k, m_k)
        b_k = _token(k, bos, t, K, H, o_k, m_k)
        b_v = _token(v, bos, t, V, H, o_v, m_v)
        if HAS_G:
            b_h *= tl.exp(tl.load(g + bos + t * H).to(tl.float32))
        if HAS_BETA:
            b_v -= tl.sum(b_h * b_k[:, None], 0)
            if STORE_RESIDUAL:
                tl.store(r + (bos + t * H) * V + o_v, b_v.to(r.dtype.element_ty), mask=m_v)
            b_v *= tl.load(beta + bos + t * H).to(tl.float32)
        b_h += b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0) * scale
        tl.store(o + (bos + t * H) * V + o_v, b_o.to(o.dtype.element_ty), mask=m_v)
    if STORE_FINAL_STATE:
        tl.store(ht + p_h, b_h.to(ht.dtype.element_ty), mask=m_h)


@triton.jit
def fused_recurrent_bwd_replay_kernel(
    q, k, v, g, beta, r, h0, do, dv, dq, qdq, dk, scale, T, stride_part,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_G: tl.constexpr, HAS_BETA: tl.constexpr, USE_INITIAL_STATE: tl.constexpr, CORRECT_DK: tl.constexpr,
):  # fmt: skip
    """Replays the state forward. Pass 1 (CORRECT_DK False): dq and q.dq partials of this V-block.
    Pass 3 (CORRECT_DK True): dk_t -= S~_t dv_t, in place on this V-block's dk partial."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    part = i_v * stride_part
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
        b_h += tl.load(h0 + p_h, mask=m_k[:, None] & m_v[None, :], other=0.0).to(tl.float32)
    for t in range(T):
        b_k = _token(k, bos, t, K, H, o_k, m_k)
        if HAS_G:
            b_h *= tl.exp(tl.load(g + bos + t * H).to(tl.float32))
        if HAS_BETA:
            b_u = _token(r, bos, t, V, H, o_v, m_v) * tl.load(beta + bos + t * H).to(tl.float32)
        else:
            b_u = _token(v, bos, t, V, H, o_v, m_v)
        if CORRECT_DK:
            b_dv = _token(dv, bos, t, V, H, o_v, m_v)
            p_dk = dk + part * K + (bos + t * H) * K + o_k
            b_dk = tl.load(p_dk, mask=m_k, other=0.0) - tl.sum(b_h * b_dv[None, :], 1)
            tl.store(p_dk, b_dk, mask=m_k)
        b_h += b_k[:, None] * b_u[None, :]
        if not CORRECT_DK:
            b_q = _token(q, bos, t, K, H, o_k, m_k)
            b_do = _token(do, bos, t, V, H, o_v, m_v)
            b_dq = tl.sum(b_h * b_do[None, :], 1) * scale
            tl.store(dq + part * K + (bos + t * H) * K + o_k, b_dq, mask=m_k)
            if HAS_G:
                tl.store(qdq + part + bos + t * H, tl.sum(b_dq * b_q, 0))


@triton.jit
def fused_recurrent_bwd_reverse_kernel(
    q, k, v, g, beta, r, ht, do, dht, dk, dv, dbeta, dg, dh0, scale, T, stride_part,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_G: tl.constexpr, HAS_BETA: tl.constexpr, USE_FINAL_STATE_GRADIENT: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr,
):  # fmt: skip
    """Pass 2: the reverse recurrence of dS; dk (first term), dv, dbeta and dg partials, dh0.

    dg holds q.dq from pass 1 on entry and the reverse running sum on exit.
    """
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    part = i_v * stride_part
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    b_sdh = tl.zeros([BV], dtype=tl.float32)
    if USE_FINAL_STATE_GRADIENT:
        b_dh += tl.load(dht + p_h, mask=m_h, other=0.0).to(tl.float32)
        if HAS_G:
            b_sdh += tl.sum(tl.load(ht + p_h, mask=m_h, other=0.0) * b_dh, 0)
    b_dg = tl.sum(b_sdh, 0)  # dg_{T+1} = <S_T, dS_T> (this V-block's part)
    for t in range(T - 1, -1, -1):
        b_q = _token(q, bos, t, K, H, o_k, m_k)
        b_k = _token(k, bos, t, K, H, o_k, m_k)
        b_do = _token(do, bos, t, V, H, o_v, m_v)
        b_dh += (b_q * scale)[:, None] * b_do[None, :]
        b_du = tl.sum(b_dh * b_k[:, None], 0)
        if HAS_BETA:
            b_beta = tl.load(beta + bos + t * H).to(tl.float32)
            b_r = _token(r, bos, t, V, H, o_v, m_v)
            b_dk = tl.sum(b_dh * (b_r * b_beta)[None, :], 1)
            b_dv = b_du * b_beta
            tl.store(dbeta + part + bos + t * H, tl.sum(b_du * b_r, 0))
            b_dh -= b_k[:, None] * b_dv[None, :]
        else:
            b_dk = tl.sum(b_dh * _token(v, bos, t, V, H, o_v, m_v)[None, :], 1)
            b_dv = b_du
        tl.store(dk + part * K + (bos + t * H) * K + o_k, b_dk, mask=m_k)
        tl.store(dv + (bos + t * H) * V + o_v, b_dv.to(dv.dtype.element_ty), mask=m_v)
        if HAS_G:
            b_dg += tl.load(dg + part + bos + t * H) - tl.sum(_token(v, bos, t, V, H, o_v, m_v) * b_dv, 0)
            tl.store(dg + part + bos + t * H, b_dg)
            b_dh *= tl.exp(tl.load(g + bos + t * H).to(tl.float32))
    if USE_INITIAL_STATE:
        tl.store(dh0 + p_h, b_dh.to(dh0.dtype.element_ty), mask=m_h)


def _blocks(K: int, V: int, cap: int) -> tuple[int, int]:
    # The whole K in one tile (the readout S^T k needs it); V split for parallelism. No tl.dot here,
    # so blocks below 16 are fine.
    return triton.next_power_of_2(K), min(triton.next_power_of_2(V), cap)


class FusedRecurrentFunction(torch.autograd.Function):
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
        training: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, H, K = q.shape
        V = v.shape[-1]
        # Small V-blocks: decoding has few (b, h) pairs, and a [K, 16] state fits one warp's registers.
        BK, BV = _blocks(K, V, 16)
        o = torch.empty_like(v)
        # The backward needs the final state (for dg) and the residuals r (delta rule).
        store_ht = output_final_state or training
        ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if store_ht else None
        r = (
            torch.empty(B, T, H, V, device=q.device, dtype=torch.float32)
            if training and beta is not None
            else None
        )
        fused_recurrent_fwd_kernel[(triton.cdiv(V, BV), B * H)](
            q, k, v, g, beta, o, initial_state, ht, r, scale, T, H=H, K=K, V=V, BK=BK, BV=BV,
            HAS_G=g is not None, HAS_BETA=beta is not None, USE_INITIAL_STATE=initial_state is not None,
            STORE_FINAL_STATE=store_ht, STORE_RESIDUAL=r is not None, num_warps=1,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, g, beta, r, initial_state, ht)
        ctx.scale = scale
        return o, ht if output_final_state else None

    @staticmethod
    def backward(ctx, do: torch.Tensor, dht: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        q, k, v, g, beta, r, h0, ht = ctx.saved_tensors
        B, T, H, K = q.shape
        V = v.shape[-1]
        # Wider V-blocks than the forward: dq, dk, dbeta, dg are partial per V-block (fp32 buffers).
        BK, BV = _blocks(K, V, 32)
        NV = triton.cdiv(V, BV)
        do = do.contiguous()
        dht = dht.contiguous() if dht is not None else None
        has_g, has_beta = g is not None, beta is not None
        f32 = {"device": q.device, "dtype": torch.float32}
        dq = torch.empty(NV, B, T, H, K, **f32)
        dk = torch.empty(NV, B, T, H, K, **f32)
        dv = torch.empty(B, T, H, V, **f32)
        dg = torch.empty(NV, B, T, H, **f32) if has_g else None
        dbeta = torch.empty(NV, B, T, H, **f32) if has_beta else None
        dh0 = torch.empty(B, H, K, V, **f32) if h0 is not None else None
        grid = (NV, B * H)
        warps = 4 if BK * BV > 2048 else 1
        meta = {"H": H, "K": K, "V": V, "BK": BK, "BV": BV, "HAS_G": has_g, "HAS_BETA": has_beta}
        replay = (q, k, v, g, beta, r, h0, do, dv, dq, dg, dk, ctx.scale, T, B * T * H)
        fused_recurrent_bwd_replay_kernel[grid](
            *replay, **meta, USE_INITIAL_STATE=h0 is not None, CORRECT_DK=False, num_warps=warps
        )
        fused_recurrent_bwd_reverse_kernel[grid](
            q, k, v, g, beta, r, ht, do, dht, dk, dv, dbeta, dg, dh0, ctx.scale, T, B * T * H, **meta,
            USE_FINAL_STATE_GRADIENT=dht is not None, USE_INITIAL_STATE=h0 is not None, num_warps=warps,
        )  # fmt: skip
        if has_beta:
            fused_recurrent_bwd_replay_kernel[grid](
                *replay, **meta, USE_INITIAL_STATE=h0 is not None, CORRECT_DK=True, num_warps=warps
            )
        return (
            dq.sum(0).to(q.dtype),
            dk.sum(0).to(k.dtype),
            dv.to(v.dtype),
            dg.sum(0).to(g.dtype) if has_g else None,
            dbeta.sum(0).to(beta.dtype) if has_beta else None,
            None,
            dh0.to(h0.dtype) if dh0 is not None else None,
            None,
            None,
        )


def fused_recurrent_triton(
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
    """The generic recurrence (see `asiarch.kernels.common`) token by token in one Triton kernel.

    Same arguments and results as `chunk_triton`; chunk_size is accepted for a
    uniform signature and ignored. Differentiable w.r.t. q, k, v, g, beta and
    initial_state. Best for decoding and short sequences; training on long
    sequences should use the chunked kernels (the backward replays the state
    token by token, and dq/dk/dbeta/dg are reduced over V-blocks in torch).
    """
    del chunk_size
    check_inputs(q, k, v, g, beta, initial_state)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if q.shape[1] == 0:
        return empty_sequence(q, v, initial_state, output_final_state)
    q, k, v, g, beta, initial_state = (
        t.contiguous() if t is not None else None for t in (q, k, v, g, beta, initial_state)
    )
    # Function.forward runs with grad disabled, so whether to keep what the backward needs is decided here.
    training = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, g, beta, initial_state)
    )
    return FusedRecurrentFunction.apply(
        q, k, v, g, beta, float(scale), initial_state, output_final_state, training
    )
