"""FLA's output normalisation of linear attention as two fused Triton kernels: `normalize_triton`.

Computes exactly what `normalize.normalize_torch` computes,

    d_t = <scale q_t, sum_{s<=t} k_s> + EPS,    o_t <- o_t / d_t,

but in one pass over q, k and o (and one backward pass over q, k, o, dO) instead of a
dozen eager fp32 ops, each a full read and write of a [B, T, H, K] tensor: at (32, 2048,
4, 128) in bf16 that is ~0.27 GB moved instead of ~2 GB forward (and more again through
autograd). One program per (batch, head) walks the sequence chunk by chunk, carrying the
running key sum (forward) or the running sum of dz_t q_t (backward) in registers; within a
chunk the prefix sums are `tl.cumsum`s in fp32.

Gradients, with o_n = o / d and dz_t = -<dO_t, o_n_t> / d_t:
    dO_raw = dO / d,   dq_t = dz_t scale sum_{s<=t} k_s,   dk_s = scale sum_{t>=s} dz_t q_t.

Saved for backward: q, k, the normalised output and d ([B, T, H] fp32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from asiarch.kernels.common.normalize import EPS
from asiarch.kernels.common.triton_utils import (
    autotune,
    block,
    check_device,
    load_tile,
    load_vec,
    store_tile,
    store_vec,
)


@autotune(key=["K", "V", "BT"])
@triton.jit
def normalize_fwd_kernel(
    q, k, o, o_n, d, scale, eps, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr,
):  # fmt: skip
    """o_n = o / d and d for one (batch, head), chunk after chunk."""
    i_bh = tl.program_id(0)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    o_i = tl.arange(0, BT)
    b_ksum = tl.zeros([BK], dtype=tl.float32)  # sum of the keys of the chunks before this one
    for i_t in range(tl.cdiv(T, BT)):
        b_q = load_tile(q + bos * K, i_t * BT, 0, T, K, H * K, 1, BT, BK)
        b_k = load_tile(k + bos * K, i_t * BT, 0, T, K, H * K, 1, BT, BK)
        b_kc = tl.cumsum(b_k, axis=0) + b_ksum[None, :]
        b_ksum += tl.sum(b_k, axis=0)
        # Rows past T divide nothing (they are not stored); 1 keeps them finite.
        b_d = tl.where(i_t * BT + o_i < T, tl.sum(b_q * scale * b_kc, axis=1) + eps, 1.0)
        store_vec(d + bos, b_d, i_t * BT, T, H, BT)
        for i_v in range(tl.cdiv(V, BV)):
            b_o = load_tile(o + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
            store_tile(o_n + bos * V, b_o / b_d[:, None], i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)


@autotune(key=["K", "V", "BT"])
@triton.jit
def normalize_bwd_kernel(
    q, k, o_n, d, do_n, dq, dk, do, dz, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr,
):  # fmt: skip
    """dq, dk and dO (the core's output gradient) for one (batch, head).

    Forward over the chunks: dz (kept in a [B, T, H] buffer), dO and dq, which needs the
    running key sum; then backward over the chunks: dk, which needs the reverse running sum
    of dz_t q_t.
    """
    i_bh = tl.program_id(0)
    i_b, i_h = i_bh // H, i_bh % H
    bos = i_b.to(tl.int64) * T * H + i_h
    NT = tl.cdiv(T, BT)
    o_i = tl.arange(0, BT)
    b_ksum = tl.zeros([BK], dtype=tl.float32)
    for i_t in range(NT):
        b_d = tl.where(i_t * BT + o_i < T, load_vec(d + bos, i_t * BT, T, H, BT), 1.0)
        b_dot = tl.zeros([BT], dtype=tl.float32)
        for i_v in range(tl.cdiv(V, BV)):
            b_don = load_tile(do_n + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
            b_on = load_tile(o_n + bos * V, i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
            b_dot += tl.sum(b_don * b_on, axis=1)
            store_tile(do + bos * V, b_don / b_d[:, None], i_t * BT, i_v * BV, T, V, H * V, 1, BT, BV)
        b_dz = -b_dot / b_d
        store_vec(dz + bos, b_dz, i_t * BT, T, H, BT)
        b_k = load_tile(k + bos * K, i_t * BT, 0, T, K, H * K, 1, BT, BK)
        b_kc = tl.cumsum(b_k, axis=0) + b_ksum[None, :]
        b_ksum += tl.sum(b_k, axis=0)
        store_tile(dq + bos * K, b_kc * (b_dz * scale)[:, None], i_t * BT, 0, T, K, H * K, 1, BT, BK)
    # The second pass reads dz that other threads of this program wrote.
    tl.debug_barrier()
    b_xsum = tl.zeros([BK], dtype=tl.float32)  # sum of dz_t q_t over the chunks after this one
    for i_r in range(NT):
        i_t = NT - 1 - i_r
        b_q = load_tile(q + bos * K, i_t * BT, 0, T, K, H * K, 1, BT, BK)
        b_x = b_q * (load_vec(dz + bos, i_t * BT, T, H, BT) * scale)[:, None]
        b_dk = tl.cumsum(b_x, axis=0, reverse=True) + b_xsum[None, :]
        b_xsum += tl.sum(b_x, axis=0)
        store_tile(dk + bos * K, b_dk, i_t * BT, 0, T, K, H * K, 1, BT, BK)


def _blocks(K: int, V: int) -> dict[str, int]:
    """Chunk length and tiles: the [BT, K] tiles (q, k and the prefix sum) stay in registers."""
    BK = block(K)
    return {"BT": 64 if BK <= 128 else 32, "BK": BK, "BV": block(V, 64)}


class NormalizeTritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, o: torch.Tensor, scale: float) -> torch.Tensor:
        B, T, H, K = q.shape
        V = o.shape[-1]
        o_n = torch.empty_like(o)
        d = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
        normalize_fwd_kernel[(B * H,)](q, k, o, o_n, d, scale, EPS, T, H=H, K=K, V=V, **_blocks(K, V))
        ctx.save_for_backward(q, k, o_n, d)
        ctx.scale = scale
        return o_n

    @staticmethod
    def backward(ctx, do_n: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, o_n, d = ctx.saved_tensors
        B, T, H, K = q.shape
        V = o_n.shape[-1]
        dq, dk, do = torch.empty_like(q), torch.empty_like(k), torch.empty_like(o_n)
        dz = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
        normalize_bwd_kernel[(B * H,)](
            q, k, o_n, d, do_n.contiguous(), dq, dk, do, dz, ctx.scale, T, H=H, K=K, V=V, **_blocks(K, V)
        )
        return dq, dk, do, None


def normalize_triton(q: torch.Tensor, k: torch.Tensor, o: torch.Tensor, scale: float) -> torch.Tensor:
    """`normalize.normalize_torch` by the fused kernels: q, k [B, T, H, K], o [B, T, H, V] -> o in o's dtype.

    Differentiable w.r.t. q, k and o.
    """
    check_device(q, k, o)
    if q.shape[1] == 0:
        return o
    return NormalizeTritonFunction.apply(q.contiguous(), k.contiguous(), o.contiguous(), float(scale))
