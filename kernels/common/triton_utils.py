"""Shared pieces of the Triton kernels: tile load/store helpers, the dot helper, host-side checks.

Triton 3.9 removed block pointers, so tiles are addressed with plain pointer
arithmetic and masks; that also keeps ragged chunks (T not a multiple of the
chunk size) and head dims that are not powers of two on one code path: the tile
is padded to a power of two >= 16 (the smallest `tl.dot` accepts) and masked.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

# Largest head dim a kernel keeps whole in registers (the state tile [K, BV]).
MAX_HEAD_DIM = 256
CHUNK_SIZES = (16, 32, 64)


def is_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def block(n: int, cap: int | None = None) -> int:
    """Power of two >= max(n, 16), optionally capped (the cap is itself a power of two >= 16)."""
    b = max(16, triton.next_power_of_2(n))
    return min(b, cap) if cap is not None else b


def dot_flags(dtype: torch.dtype) -> dict[str, object]:
    """Constexpr flags that decide how `tl.dot` operands are typed.

    F32: cast operands to fp32. Needed in the interpreter, whose bf16 dot returns
    garbage (numpy has no bf16), and natural for fp32 inputs.
    PREC: for fp32 operands on a GPU the default tf32 loses ~3 decimal digits,
    more than the tolerances allow, so fp32 inputs use 3xTF32 (fp32-level accuracy
    on tensor cores); 16-bit operands ignore it.
    """
    f32 = dtype == torch.float32 or is_interpreter()
    return {"F32": f32, "PREC": "tf32x3" if dtype == torch.float32 else "tf32"}


def autotune(
    key: list[str], warps: tuple[int, ...] = (2, 4, 8), stages: tuple[int, ...] = (2, 3)
) -> Callable[[triton.JITFunction], triton.runtime.Autotuner]:
    """triton.autotune over num_warps x num_stages (as FLA); one config in the interpreter (no timing there).

    Only for kernels that are idempotent (write outputs from inputs), since tuning reruns them.
    """
    configs = [triton.Config({}, num_warps=w, num_stages=s) for w in warps for s in stages]
    return triton.autotune(configs=configs[:1] if is_interpreter() else configs, key=key)


def state_block_v(BH: int, K: int, V: int) -> int:
    """V-block of the sequential state kernels (one program per (V-block, b*h)).

    32 columns when K is large (the [K, BV] state lives in registers) or when there
    are too few (b, h) pairs to fill the GPU with 64-wide blocks; 64 otherwise, so
    k and w are re-read by fewer programs.
    """
    if block(K) > 128 or BH * triton.cdiv(V, 64) < 256:
        return block(V, 32)
    return block(V, 64)


def check_device(*tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and t.device.type == "cpu" and not is_interpreter():
            raise RuntimeError(
                "Triton kernels need CUDA tensors; CPU tensors work only with TRITON_INTERPRET=1 "
                "(set before triton is imported). Use chunk_torch on CPU."
            )


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> None:
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be [B, T, H, K]; got {tuple(q.shape)} and {tuple(k.shape)}")
    B, T, H, K = q.shape
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"v must be [B, T, H, V] with B, T, H = {B, T, H}; got {tuple(v.shape)}")
    for name, t in (("g", g), ("beta", beta)):
        if t is not None and t.shape != (B, T, H):
            raise ValueError(f"{name} must be [B, T, H] = {B, T, H}; got {tuple(t.shape)}")
    if initial_state is not None and initial_state.shape != (B, H, K, v.shape[-1]):
        raise ValueError(f"initial_state must be [B, H, K, V]; got {tuple(initial_state.shape)}")
    if K > MAX_HEAD_DIM:
        raise ValueError(f"head dim K={K} exceeds {MAX_HEAD_DIM} (the state slice is kept in registers)")
    check_device(q, k, v, g, beta, initial_state)


def empty_sequence(
    q: torch.Tensor, v: torch.Tensor, initial_state: torch.Tensor | None, output_final_state: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The result for T = 0 (e.g. an empty segment of a packed batch): no launch, the state passes through."""
    B, _, H, K = q.shape
    o = v.new_zeros(B, 0, H, v.shape[-1])
    if not output_final_state:
        return o, None
    if initial_state is not None:
        return o, initial_state.float()
    return o, q.new_zeros(B, H, K, v.shape[-1], dtype=torch.float32)


@triton.jit
def mm(a, b, like, F32: tl.constexpr, PREC: tl.constexpr):
    """a @ b with operands in the compute dtype (fp32, or `like`'s element type) and an fp32 result."""
    if F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision=PREC)
    else:
        return tl.dot(a.to(like.dtype.element_ty), b.to(like.dtype.element_ty), input_precision=PREC)


@triton.jit
def load_tile(ptr, r0, c0, R, C, stride_r, stride_c, BR: tl.constexpr, BC: tl.constexpr):
    """Rows [r0, r0+BR) x cols [c0, c0+BC) of an R x C matrix; zeros outside, loaded as fp32."""
    o_r = r0 + tl.arange(0, BR)
    o_c = c0 + tl.arange(0, BC)
    m = (o_r < R)[:, None] & (o_c < C)[None, :]
    p = ptr + o_r[:, None].to(tl.int64) * stride_r + o_c[None, :].to(tl.int64) * stride_c
    return tl.load(p, mask=m, other=0.0).to(tl.float32)


@triton.jit
def store_tile(ptr, x, r0, c0, R, C, stride_r, stride_c, BR: tl.constexpr, BC: tl.constexpr):
    o_r = r0 + tl.arange(0, BR)
    o_c = c0 + tl.arange(0, BC)
    m = (o_r < R)[:, None] & (o_c < C)[None, :]
    p = ptr + o_r[:, None].to(tl.int64) * stride_r + o_c[None, :].to(tl.int64) * stride_c
    tl.store(p, x.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def load_vec(ptr, r0, R, stride, BR: tl.constexpr):
    o_r = r0 + tl.arange(0, BR)
    return tl.load(ptr + o_r.to(tl.int64) * stride, mask=o_r < R, other=0.0).to(tl.float32)


@triton.jit
def store_vec(ptr, x, r0, R, stride, BR: tl.constexpr):
    o_r = r0 + tl.arange(0, BR)
    tl.store(ptr + o_r.to(tl.int64) * stride, x.to(ptr.dtype.element_ty), mask=o_r < R)


@triton.jit
def chunk_cumsum_kernel(s, o, NK, stride_k, T, H: tl.constexpr, BT: tl.constexpr, REVERSE: tl.constexpr):
    """Cumulative sum of a [NK, B, T, H] fp32 input within each chunk of BT tokens, summing the NK slices.

    Forward: the cumulative log-decay G of g (NK = 1). Backward: the reverse
    cumulative sum that turns dG into dg, adding up per-K-block partial dG.
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    base = (i_b.to(tl.int64) * T) * H + i_h
    b_s = tl.zeros([BT], dtype=tl.float32)
    for i_k in range(NK):
        b_s += load_vec(s + i_k * stride_k + base, i_t * BT, T, H, BT)
    b_s = tl.cumsum(b_s, axis=0, reverse=REVERSE)
    store_vec(o + base, b_s, i_t * BT, T, H, BT)


def chunk_cumsum(s: torch.Tensor, chunk_size: int, reverse: bool = False) -> torch.Tensor:
    """s: [B, T, H] or [NK, B, T, H] partials (summed). Returns the fp32 [B, T, H] within-chunk cumsum."""
    if s.dim() == 3:
        s = s.unsqueeze(0)
    NK, B, T, H = s.shape
    s = s.contiguous()
    out = torch.empty(B, T, H, device=s.device, dtype=torch.float32)
    grid = (triton.cdiv(T, chunk_size), B * H)
    chunk_cumsum_kernel[grid](s, out, NK, B * T * H, T, H=H, BT=chunk_size, REVERSE=reverse, num_warps=1)
    return out
