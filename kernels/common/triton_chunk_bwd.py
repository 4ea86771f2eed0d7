"""Backward Triton kernels of the chunked algorithm (see `triton_chunk` for the math and the data flow).

Same layouts as `triton_chunk_fwd`; dh [B, NT, H, K, V] holds, at chunk n, the
gradient of the state leaving chunk n (dS_{n+1}), paired with h[n] = S_n.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from asiarch.kernels.common.triton_chunk_fwd import chunk_fwd_h, load_tril, recompute_w_u
from asiarch.kernels.common.triton_utils import (
    autotune,
    block,
    chunk_cumsum,
    dot_flags,
    load_tile,
    load_vec,
    mm,
    state_block_v,
    store_tile,
    store_vec,
)


@autotune(key=["H", "K", "V", "BT", "HAS_G"])
@triton.jit
def chunk_bwd_dv_local_kernel(
    q, k, g, do, dv, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dV_new from the intra-chunk term: scale * tril(Q K^T * Gamma)^T dO."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    b_A = tl.zeros([BT, BT], dtype=tl.float32)  # b_A[j, i] = k_j . q_i
    for i_k in range(tl.cdiv(K, BK)):
        b_k = load_tile(k + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_qt = load_tile(q + bos * K, i_k * BK, i_t * BT, K, T, 1, H * K, BK, BT)
        b_A += mm(b_k, b_qt, q, F32, PREC)
    o_i = tl.arange(0, BT)
    m_A = (o_i[:, None] <= o_i[None, :]) & (i_t * BT + o_i < T)[None, :]
    if HAS_G:
        b_g = load_vec(g + bos, i_t * BT, T, H, BT)
        b_A *= tl.exp(tl.where(m_A, b_g[None, :] - b_g[:, None], 0.0))
    b_A = tl.where(m_A, b_A * scale, 0.0)
    for i_v in range(tl.cdiv(V, BV)):
        b_do = load_tile(do + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_dv = mm(b_A, b_do, q, F32, PREC)
        store_tile(dv + bos * V, b_dv, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)


@autotune(key=["H", "K", "V", "BT", "BV", "HAS_G", "HAS_BETA"], warps=(2, 4), stages=(2, 3, 4))
@triton.jit
def chunk_bwd_dhu_kernel(
    q, k, w, g, do, dv, dv2, dh, dht, dh0, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, HAS_BETA: tl.constexpr, USE_FINAL_STATE_GRADIENT: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """The reverse recurrence over chunks; the [K, BV] slice of dS stays in registers.

    Per chunk (last to first): store dS' (the gradient of the state leaving it),
    dV_new = dV_local + (K * exp(G_last - G)) dS', then
    dS <- exp(G_last) dS' + scale (Q * exp(G))^T dO - W^T dV_new.
    """
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    bos = i_b.to(tl.int64) * T * H + i_h
    o_i = tl.arange(0, BT)
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_FINAL_STATE_GRADIENT:
        b_dh += load_tile(dht + i_bh.to(tl.int64) * K * V, 0, i_v * BV, K, V, V, 1, BK, BV)
    for i_t in range(NT - 1, -1, -1):
        dh_t = dh + ((i_b.to(tl.int64) * NT + i_t) * H + i_h) * K * V
        store_tile(dh_t, b_dh, 0, i_v * BV, K, V, V, 1, BK, BV)
        b_k = load_tile(k + bos * K, i_t * BT, 0, T, K, H * K, 1, BT, BK)
        b_qt = load_tile(q + bos * K, 0, i_t * BT, K, T, 1, H * K, BK, BT)
        if HAS_G:
            last = tl.minimum((i_t + 1) * BT, T) - 1
            b_g_last = tl.load(g + bos + last * H).to(tl.float32)
            b_g = load_vec(g + bos, i_t * BT, T, H, BT)
            b_k *= tl.where(i_t * BT + o_i < T, tl.exp(b_g_last - b_g), 0.0)[:, None]
            b_qt *= tl.exp(b_g)[None, :]
        b_dv = load_tile(dv + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_dv += mm(b_k, b_dh, q, F32, PREC)
        store_tile(dv2 + bos * V, b_dv, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        if HAS_G:
            b_dh *= tl.exp(b_g_last)
        b_do = load_tile(do + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_dh += mm(b_qt * scale, b_do, q, F32, PREC)
        if HAS_BETA:
            b_wt = load_tile(w + bos * K, 0, i_t * BT, K, T, 1, H * K, BK, BT)
            b_dh -= mm(b_wt, b_dv, q, F32, PREC)
    if USE_INITIAL_STATE:
        store_tile(dh0 + i_bh.to(tl.int64) * K * V, b_dh, 0, i_v * BV, K, V, V, 1, BK, BV)


@autotune(key=["H", "K", "V", "BT", "HAS_G", "HAS_BETA"])
@triton.jit
def chunk_bwd_dqkwg_kernel(
    q, k, v_new, h, dh, do, dv2, g, dq, dk, dw, dg, stride_dg, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, HAS_BETA: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dq, dk (intra-chunk + state terms), dW = -dV_new S^T and the per-token dG of one (K-block, chunk).

    dG_i (the gradient of the cumulative G_i) is q_i.dq_i - k_i.dk_i plus, at the
    chunk's last token, exp(G_last) <S, dS'> + sum_j k_j.dk_state_j; it is partial
    per K-block (summed by the consumer).
    """
    i_k, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    bos = i_b.to(tl.int64) * T * H + i_h
    off_h = ((i_b.to(tl.int64) * NT + i_t) * H + i_h) * K * V
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dw = tl.zeros([BT, BK], dtype=tl.float32)
    b_ds = tl.zeros([BT, BT], dtype=tl.float32)
    b_hdh = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        b_vn = load_tile(v_new + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_do = load_tile(do + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_h = load_tile(h + off_h, i_k * BK, i_v * BV, K, V, V, 1, BK, BV)
        b_dh = load_tile(dh + off_h, i_k * BK, i_v * BV, K, V, V, 1, BK, BV)
        b_ds += mm(b_do, tl.trans(b_vn), q, F32, PREC)
        b_dq += mm(b_do, tl.trans(b_h), q, F32, PREC)
        b_dk += mm(b_vn, tl.trans(b_dh), q, F32, PREC)
        if HAS_BETA:
            b_dv2 = load_tile(dv2 + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
            b_dw += mm(b_dv2, tl.trans(b_h), q, F32, PREC)
        if HAS_G:
            b_hdh += tl.sum(b_h * b_dh, 1)
    b_q = load_tile(q + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
    b_k = load_tile(k + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
    o_i = tl.arange(0, BT)
    m_t = i_t * BT + o_i < T
    m_s = (o_i[:, None] >= o_i[None, :]) & m_t[:, None]
    if HAS_G:
        last = tl.minimum((i_t + 1) * BT, T) - 1
        b_g_last = tl.load(g + bos + last * H).to(tl.float32)
        b_g = load_vec(g + bos, i_t * BT, T, H, BT)
        b_dq *= tl.exp(b_g)[:, None]
        b_dk *= tl.where(m_t, tl.exp(b_g_last - b_g), 0.0)[:, None]
        b_dg_last = tl.sum(b_hdh, 0) * tl.exp(b_g_last) + tl.sum(tl.sum(b_dk * b_k, 1), 0)
        b_ds *= tl.exp(tl.where(m_s, b_g[:, None] - b_g[None, :], 0.0))
    b_ds = tl.where(m_s, b_ds, 0.0) * scale
    b_dq = b_dq * scale + mm(b_ds, b_k, q, F32, PREC)
    b_dk += mm(tl.trans(b_ds), b_q, q, F32, PREC)
    store_tile(dq + bos * K, b_dq, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
    store_tile(dk + bos * K, b_dk, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
    if HAS_BETA:
        store_tile(dw + bos * K, -b_dw, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
    if HAS_G:
        b_dg = tl.sum(b_dq * b_q, 1) - tl.sum(b_dk * b_k, 1)
        b_dg += tl.where(i_t * BT + o_i == last, b_dg_last, 0.0)
        store_vec(dg + i_k * stride_dg + bos, b_dg, i_t * BT, T, H, BT)


@autotune(key=["H", "K", "V", "BT", "HAS_G"])
@triton.jit
def prepare_wy_bwd_kernel(
    k, v, g, beta, Ai, dw, du, dk_in, dg_in, dk, dv, dbeta, dg, NK, stride_dg, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Backward through W = Ai (beta exp(G) K), U = Ai (beta V) and Ai = (I + A)^{-1}.

    dAi = dU (beta V)^T + dW (beta exp(G) K)^T; dA = -Ai^T dAi Ai^T (strictly lower);
    with dM = dA * Gamma and A_ij = beta_i (k_i.k_j) Gamma_ij:
    dK += diag(beta) dM K + dM^T (beta K), dbeta_i += sum_j dM_ij k_i.k_j and
    dG += rowsum(P) - colsum(P) for P = dA * A. Adds the dk/dG partials from
    chunk_bwd_dqkwg_kernel and ends with the reverse within-chunk cumsum dG -> dg.
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    o_i = tl.arange(0, BT)
    m_t = i_t * BT + o_i < T
    b_Ai = load_tril(Ai + bos * BT, i_t, T, H, BT)
    b_beta = load_vec(beta + bos, i_t * BT, T, H, BT)
    b_ks = b_beta  # the row scale of K inside W
    if HAS_G:
        b_g = load_vec(g + bos, i_t * BT, T, H, BT)
        b_eg = tl.exp(b_g)
        b_ks = b_beta * b_eg
    b_dAi = tl.zeros([BT, BT], dtype=tl.float32)
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    b_dbeta = tl.zeros([BT], dtype=tl.float32)
    b_dG = tl.zeros([BT], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        b_v = load_tile(v + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_du = load_tile(du + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_dAi += mm(b_du, tl.trans(b_v * b_beta[:, None]), k, F32, PREC)
        b_dvb = mm(tl.trans(b_Ai), b_du, k, F32, PREC)
        store_tile(dv + bos * V, b_dvb * b_beta[:, None], i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_dbeta += tl.sum(b_dvb * b_v, 1)
    for i_k in range(tl.cdiv(K, BK)):
        b_k = load_tile(k + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_dw = load_tile(dw + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_dAi += mm(b_dw, tl.trans(b_k * b_ks[:, None]), k, F32, PREC)
        b_kk += mm(b_k, tl.trans(b_k), k, F32, PREC)
        b_kdk = tl.sum(mm(tl.trans(b_Ai), b_dw, k, F32, PREC) * b_k, 1)
        if HAS_G:
            b_dbeta += b_kdk * b_eg
            b_dG += b_kdk * b_ks
        else:
            b_dbeta += b_kdk
    b_dA = -mm(mm(tl.trans(b_Ai), b_dAi, k, F32, PREC), tl.trans(b_Ai), k, F32, PREC)
    m_A = (o_i[:, None] > o_i[None, :]) & m_t[:, None]
    if HAS_G:
        b_dA *= tl.exp(tl.where(m_A, b_g[:, None] - b_g[None, :], 0.0))
    b_dM = tl.where(m_A, b_dA, 0.0)
    b_dMkk = b_dM * b_kk
    b_dbeta += tl.sum(b_dMkk, 1)
    store_vec(dbeta + bos, b_dbeta, i_t * BT, T, H, BT)
    if HAS_G:
        b_P = b_dMkk * b_beta[:, None]
        b_dG += tl.sum(b_P, 1) - tl.sum(b_P, 0)
        for i_k in range(NK):
            b_dG += load_vec(dg_in + i_k * stride_dg + bos, i_t * BT, T, H, BT)
        store_vec(dg + bos, tl.cumsum(b_dG, axis=0, reverse=True), i_t * BT, T, H, BT)
    b_dMb = b_dM * b_beta[:, None]
    for i_k in range(tl.cdiv(K, BK)):
        b_k = load_tile(k + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_dw = load_tile(dw + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_dk = load_tile(dk_in + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_dk += mm(tl.trans(b_Ai), b_dw, k, F32, PREC) * b_ks[:, None]
        b_dk += mm(b_dMb, b_k, k, F32, PREC) + mm(tl.trans(b_dM), b_k * b_beta[:, None], k, F32, PREC)
        store_tile(dk + bos * K, b_dk, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)


def chunk_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor | None,
    Ai: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    do: torch.Tensor,
    dht: torch.Tensor | None,
    scale: float,
    chunk_size: int,
) -> tuple[torch.Tensor, ...]:
    """Gradients (dq, dk, dv, dg, dbeta, dh0); g is the cumulative G, dg is w.r.t. the per-token g (fp32).

    W, U, the per-chunk states and V_new are recomputed rather than saved (as FLA
    does): one extra pass of cheap kernels instead of [B, NT, H, K, V] of memory.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    BT = chunk_size
    NT = triton.cdiv(T, BT)
    has_g, has_beta = g is not None, beta is not None
    flags = dot_flags(q.dtype)
    w = u = None
    if has_beta:
        w, u = recompute_w_u(k, v, g, beta, Ai, BT)
    h, v_new, _ = chunk_fwd_h(k, v, w, u, g, initial_state, False, BT)

    dv_local = torch.empty_like(v)
    chunk_bwd_dv_local_kernel[(NT, B * H)](
        q, k, g, do, dv_local, scale, T, H=H, K=K, V=V, BT=BT, BK=block(K, 64), BV=block(V, 64),
        HAS_G=has_g, **flags,
    )  # fmt: skip

    BK = block(K)
    BV = state_block_v(B * H, K, V)
    dh = torch.empty(B, NT, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if initial_state is not None else None
    dv2 = torch.empty_like(v)
    chunk_bwd_dhu_kernel[(triton.cdiv(V, BV), B * H)](
        q, k, w, g, do, dv_local, dv2, dh, dht, dh0, scale, T, H=H, K=K, V=V, BT=BT, BK=BK, BV=BV,
        HAS_G=has_g, HAS_BETA=has_beta, USE_FINAL_STATE_GRADIENT=dht is not None,
        USE_INITIAL_STATE=dh0 is not None, **flags,
    )  # fmt: skip

    BK = block(K, 64)
    NK = triton.cdiv(K, BK)
    dq = torch.empty_like(q)
    # With beta, dk and dg are partial here and completed by prepare_wy_bwd_kernel.
    dk = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32 if has_beta else k.dtype)
    dw = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32) if has_beta else None
    dg_part = torch.empty(NK, B, T, H, device=q.device, dtype=torch.float32) if has_g else None
    chunk_bwd_dqkwg_kernel[(NK, NT, B * H)](
        q, k, v_new, h, dh, do, dv2, g, dq, dk, dw, dg_part, B * T * H, scale, T, H=H, K=K, V=V,
        BT=BT, BK=BK, BV=block(V, 64), HAS_G=has_g, HAS_BETA=has_beta, **flags,
    )  # fmt: skip

    if not has_beta:
        dg = chunk_cumsum(dg_part, BT, reverse=True) if has_g else None
        return dq, dk, dv2, dg, None, dh0
    dk, dv, dbeta, dg = _wy_bwd(k, v, g, beta, Ai, dw, dv2, dk, dg_part, BT, BK, flags)
    return dq, dk, dv, dg, dbeta, dh0


def _wy_bwd(
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor,
    Ai: torch.Tensor | None,
    dw: torch.Tensor | None,
    du: torch.Tensor,
    dk_part: torch.Tensor,
    dg_part: torch.Tensor | None,
    BT: int,
    BK: int,
    flags: dict[str, object],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(dk, dv, dbeta, dg) through W, U and Ai, from dW, dU and the dk/dg partials of the chunk pass."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    dbeta = torch.empty(B, T, H, device=k.device, dtype=torch.float32)
    dg = torch.empty(B, T, H, device=k.device, dtype=torch.float32) if g is not None else None
    prepare_wy_bwd_kernel[(triton.cdiv(T, BT), B * H)](
        k, v, g, beta, Ai, dw, du, dk_part, dg_part, dk, dv, dbeta, dg, triton.cdiv(K, BK), B * T * H, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=block(V, 64), HAS_G=g is not None, **flags,
    )  # fmt: skip
    return dk, dv, dbeta, dg
