"""Forward Triton kernels of the chunked algorithm (see `triton_chunk` for the math and the data flow).

Layouts: q, k, w [B, T, H, K]; v, u, v_new, o [B, T, H, V]; g (the within-chunk
cumulative log-decay G, fp32) and beta [B, T, H]; A and Ai [B, T, H, BT] (row i
of a chunk holds row i of that chunk's BT x BT matrix, as in FLA); per-chunk
states h [B, NT, H, K, V]. One program per (chunk, b*h) or (V-block, b*h).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from asiarch.kernels.common.triton_utils import (
    autotune,
    block,
    dot_flags,
    load_tile,
    load_vec,
    mm,
    state_block_v,
    store_tile,
)


@autotune(key=["H", "K", "BT", "HAS_G"])
@triton.jit
def chunk_kkt_kernel(
    k, g, beta, A, T,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    HAS_G: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """A = tril(diag(beta) (K K^T * Gamma), -1) for one chunk, Gamma_ij = exp(G_i - G_j)."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        b_k = load_tile(k + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_kk += mm(b_k, tl.trans(b_k), k, F32, PREC)
    o_i = tl.arange(0, BT)
    m_t = i_t * BT + o_i < T
    # Strictly lower and on a real row: padded rows load G = 0, and exp(0 - G_j) can overflow.
    m_A = (o_i[:, None] > o_i[None, :]) & m_t[:, None]
    b_A = b_kk * load_vec(beta + bos, i_t * BT, T, H, BT)[:, None]
    if HAS_G:
        b_g = load_vec(g + bos, i_t * BT, T, H, BT)
        b_A *= tl.exp(tl.where(m_A, b_g[:, None] - b_g[None, :], 0.0))
    b_A = tl.where(m_A, b_A, 0.0)
    store_tile(A + bos * BT, b_A, i_t * BT, 0, T, BT, H * BT, 1, BT, BT)


@triton.jit
def _inv_diag16(A, r0, c0, T, stride):
    """(I + A_d)^{-1} for the strictly lower 16x16 diagonal block at (r0, c0), by forward substitution.

    Row i of N = (I + A_d)^{-1} - I is -A_i - sum_{j<i} A_ij N_j; rows are extracted
    from registers with a masked reduction (cheap at 16 x 16).
    """
    o = tl.arange(0, 16)
    b_A = load_tile(A, r0, c0, T, c0 + 16, stride, 1, 16, 16)
    b_N = -tl.where(o[:, None] > o[None, :], b_A, 0.0)
    for i in range(2, 16):
        b_a = -tl.sum(tl.where((o == i)[:, None], b_A, 0.0), 0)
        b_a = b_a + tl.sum(b_a[:, None] * b_N, 0)
        b_N = tl.where((o == i)[:, None], b_a[None, :], b_N)
    return b_N + (o[:, None] == o[None, :]).to(tl.float32)


@triton.jit
def _mm_ieee(a, b):
    # fp32 everywhere: the inverse feeds every later stage, so no tf32 here (as FLA).
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def solve_tril_kernel(A, Ai, T, H: tl.constexpr, BT: tl.constexpr):
    """Ai = (I + A)^{-1} per chunk: 16x16 diagonal blocks by substitution, then block merges.

    Off-diagonal blocks follow from (I + A) Ai = I block row by block row:
    Ai_rc = -Ai_rr sum_{c<=m<r} A_rm Ai_mc. Blocks above the diagonal are not
    written; consumers mask Ai to its lower triangle.
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    A += bos * BT
    Ai += bos * BT
    S = H * BT
    r = i_t * BT
    Ai11 = _inv_diag16(A, r, 0, T, S)
    store_tile(Ai, Ai11, r, 0, T, BT, S, 1, 16, 16)
    if BT >= 32:
        Ai22 = _inv_diag16(A, r + 16, 16, T, S)
        A21 = load_tile(A, r + 16, 0, T, BT, S, 1, 16, 16)
        Ai21 = -_mm_ieee(_mm_ieee(Ai22, A21), Ai11)
        store_tile(Ai, Ai22, r + 16, 16, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai21, r + 16, 0, T, BT, S, 1, 16, 16)
    if BT == 64:
        Ai33 = _inv_diag16(A, r + 32, 32, T, S)
        Ai44 = _inv_diag16(A, r + 48, 48, T, S)
        A31 = load_tile(A, r + 32, 0, T, BT, S, 1, 16, 16)
        A32 = load_tile(A, r + 32, 16, T, BT, S, 1, 16, 16)
        A41 = load_tile(A, r + 48, 0, T, BT, S, 1, 16, 16)
        A42 = load_tile(A, r + 48, 16, T, BT, S, 1, 16, 16)
        A43 = load_tile(A, r + 48, 32, T, BT, S, 1, 16, 16)
        Ai32 = -_mm_ieee(_mm_ieee(Ai33, A32), Ai22)
        Ai43 = -_mm_ieee(_mm_ieee(Ai44, A43), Ai33)
        Ai31 = -_mm_ieee(Ai33, _mm_ieee(A31, Ai11) + _mm_ieee(A32, Ai21))
        Ai42 = -_mm_ieee(Ai44, _mm_ieee(A42, Ai22) + _mm_ieee(A43, Ai32))
        Ai41 = -_mm_ieee(Ai44, _mm_ieee(A41, Ai11) + _mm_ieee(A42, Ai21) + _mm_ieee(A43, Ai31))
        store_tile(Ai, Ai33, r + 32, 32, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai44, r + 48, 48, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai31, r + 32, 0, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai32, r + 32, 16, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai41, r + 48, 0, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai42, r + 48, 16, T, BT, S, 1, 16, 16)
        store_tile(Ai, Ai43, r + 48, 32, T, BT, S, 1, 16, 16)


@triton.jit
def load_tril(Ai, i_t, T, H: tl.constexpr, BT: tl.constexpr):
    """The chunk's Ai tile, lower triangle only (the upper blocks are never written)."""
    o_i = tl.arange(0, BT)
    b_Ai = load_tile(Ai, i_t * BT, 0, T, BT, H * BT, 1, BT, BT)
    return tl.where(o_i[:, None] >= o_i[None, :], b_Ai, 0.0)


@autotune(key=["H", "K", "V", "BT", "HAS_G"])
@triton.jit
def recompute_w_u_kernel(
    k, v, g, beta, Ai, w, u, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """W = Ai (beta * exp(G) * K), U = Ai (beta * V): the WY form of the chunk's delta-rule updates."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    b_Ai = load_tril(Ai + bos * BT, i_t, T, H, BT)
    b_beta = load_vec(beta + bos, i_t * BT, T, H, BT)
    for i_v in range(tl.cdiv(V, BV)):
        b_v = load_tile(v + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_u = mm(b_Ai, b_v * b_beta[:, None], k, F32, PREC)
        store_tile(u + bos * V, b_u, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
    b_kscale = b_beta
    if HAS_G:
        b_kscale = b_kscale * tl.exp(load_vec(g + bos, i_t * BT, T, H, BT))
    for i_k in range(tl.cdiv(K, BK)):
        b_k = load_tile(k + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_w = mm(b_Ai, b_k * b_kscale[:, None], k, F32, PREC)
        store_tile(w + bos * K, b_w, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)


@autotune(key=["H", "K", "V", "BT", "BV", "HAS_G", "HAS_BETA"], warps=(2, 4), stages=(2, 3, 4))
@triton.jit
def chunk_fwd_h_kernel(
    k, v, w, u, g, h, h0, ht, v_new, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, HAS_BETA: tl.constexpr, USE_INITIAL_STATE: tl.constexpr,
    STORE_FINAL_STATE: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """The sequential inter-chunk recurrence; the [K, BV] state slice stays in registers.

    Per chunk: store S (the state entering the chunk), V_new = U - W S (delta rule)
    or V, then S <- exp(G_last) S + (K * exp(G_last - G))^T V_new.
    """
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    bos = i_b.to(tl.int64) * T * H + i_h
    o_i = tl.arange(0, BT)
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_INITIAL_STATE:
        b_h += load_tile(h0 + i_bh.to(tl.int64) * K * V, 0, i_v * BV, K, V, V, 1, BK, BV)
    for i_t in range(NT):
        h_t = h + ((i_b.to(tl.int64) * NT + i_t) * H + i_h) * K * V
        store_tile(h_t, b_h, 0, i_v * BV, K, V, V, 1, BK, BV)
        if HAS_BETA:
            b_w = load_tile(w + bos * K, i_t * BT, 0, T, K, H * K, 1, BT, BK)
            b_vn = load_tile(u + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
            b_vn -= mm(b_w, b_h, k, F32, PREC)
            store_tile(v_new + bos * V, b_vn, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        else:
            b_vn = load_tile(v + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        if HAS_G:
            last = tl.minimum((i_t + 1) * BT, T) - 1
            b_g_last = tl.load(g + bos + last * H).to(tl.float32)
            b_g = load_vec(g + bos, i_t * BT, T, H, BT)
            b_vn *= tl.where(i_t * BT + o_i < T, tl.exp(b_g_last - b_g), 0.0)[:, None]
            b_h *= tl.exp(b_g_last)
        b_kt = load_tile(k + bos * K, 0, i_t * BT, K, T, 1, H * K, BK, BT)
        b_h += mm(b_kt, b_vn, k, F32, PREC)
    if STORE_FINAL_STATE:
        store_tile(ht + i_bh.to(tl.int64) * K * V, b_h, 0, i_v * BV, K, V, V, 1, BK, BV)


@autotune(key=["H", "K", "V", "BT", "HAS_G"], stages=(2, 3, 4))
@triton.jit
def chunk_fwd_o_kernel(
    q, k, v_new, h, g, o, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, HAS_G: tl.constexpr, F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """O = scale [(Q * exp(G)) S + tril(Q K^T * Gamma) V_new] for one (V-block, chunk)."""
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    bos = i_b.to(tl.int64) * T * H + i_h
    h_t = h + ((i_b.to(tl.int64) * NT + i_t) * H + i_h) * K * V
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_s = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        b_q = load_tile(q + bos * K, i_t * BT, i_k * BK, T, K, H * K, 1, BT, BK)
        b_kt = load_tile(k + bos * K, i_k * BK, i_t * BT, K, T, 1, H * K, BK, BT)
        b_h = load_tile(h_t, i_k * BK, i_v * BV, K, V, V, 1, BK, BV)
        b_o += mm(b_q, b_h, q, F32, PREC)
        b_s += mm(b_q, b_kt, q, F32, PREC)
    o_i = tl.arange(0, BT)
    m_s = (o_i[:, None] >= o_i[None, :]) & (i_t * BT + o_i < T)[:, None]
    if HAS_G:
        b_g = load_vec(g + bos, i_t * BT, T, H, BT)
        b_o *= tl.exp(b_g)[:, None]
        b_s *= tl.exp(tl.where(m_s, b_g[:, None] - b_g[None, :], 0.0))
    b_s = tl.where(m_s, b_s, 0.0)
    b_v = load_tile(v_new + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
    b_o = (b_o + mm(b_s, b_v, q, F32, PREC)) * scale
    store_tile(o + bos * V, b_o, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)


def wy_inverse(k: torch.Tensor, g: torch.Tensor | None, beta: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Ai = (I + A)^{-1} per chunk, [B, T, H, BT] fp32 (A from chunk_kkt_kernel, kept only transiently)."""
    B, T, H, K = k.shape
    BT = chunk_size
    grid = (triton.cdiv(T, BT), B * H)
    A = torch.empty(B, T, H, BT, device=k.device, dtype=torch.float32)
    chunk_kkt_kernel[grid](
        k, g, beta, A, T, H=H, K=K, BT=BT, BK=block(K, 64), HAS_G=g is not None, **dot_flags(k.dtype)
    )
    Ai = torch.empty_like(A)
    solve_tril_kernel[grid](A, Ai, T, H=H, BT=BT, num_warps=1 if BT == 16 else 2)
    return Ai


def recompute_w_u(
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor,
    Ai: torch.Tensor,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    B, T, H, K = k.shape
    V = v.shape[-1]
    w = torch.empty_like(k)
    u = torch.empty_like(v)
    recompute_w_u_kernel[(triton.cdiv(T, chunk_size), B * H)](
        k, v, g, beta, Ai, w, u, T, H=H, K=K, V=V, BT=chunk_size, BK=block(K, 64), BV=block(V, 64),
        HAS_G=g is not None, **dot_flags(k.dtype),
    )  # fmt: skip
    return w, u


def chunk_fwd_h(
    k: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor | None,
    u: torch.Tensor | None,
    g: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Returns (h [B, NT, H, K, V] in k's dtype, v_new (v itself without beta), final state or None)."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, chunk_size)
    BK = block(K)
    BV = state_block_v(B * H, K, V)
    h = torch.empty(B, NT, H, K, V, device=k.device, dtype=k.dtype)
    has_beta = w is not None
    v_new = torch.empty_like(v) if has_beta else v
    ht = torch.empty(B, H, K, V, device=k.device, dtype=torch.float32) if output_final_state else None
    chunk_fwd_h_kernel[(triton.cdiv(V, BV), B * H)](
        k, v, w, u, g, h, initial_state, ht, v_new, T, H=H, K=K, V=V, BT=chunk_size, BK=BK, BV=BV,
        HAS_G=g is not None, HAS_BETA=has_beta, USE_INITIAL_STATE=initial_state is not None,
        STORE_FINAL_STATE=output_final_state, **dot_flags(k.dtype),
    )  # fmt: skip
    return h, v_new, ht


def chunk_fwd_o(
    q: torch.Tensor,
    k: torch.Tensor,
    v_new: torch.Tensor,
    h: torch.Tensor,
    g: torch.Tensor | None,
    scale: float,
    chunk_size: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    B, T, H, K = q.shape
    V = v_new.shape[-1]
    BV = block(V, 64)
    o = torch.empty(B, T, H, V, device=q.device, dtype=out_dtype)
    chunk_fwd_o_kernel[(triton.cdiv(V, BV), triton.cdiv(T, chunk_size), B * H)](
        q, k, v_new, h, g, o, scale, T, H=H, K=K, V=V, BT=chunk_size, BK=block(K, 64), BV=BV,
        HAS_G=g is not None, **dot_flags(q.dtype),
    )  # fmt: skip
    return o
