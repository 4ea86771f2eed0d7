"""Chunked PyTorch implementation of the generic recurrence: the CPU path.

The sequence is cut into N chunks of C tokens, zero-padded at the end (zero k,
v, beta and g = 0 leave the state untouched). Per chunk, with G the cumulative
log gate inside the chunk, Gamma_rc = exp(G_r - G_c) on the causal triangle and
S the state entering the chunk:

    delta rule, WY/UT form:
        A = strict_tril(diag(beta) (K K^T * Gamma))
        (I + A) W = diag(beta) K exp(G),   (I + A) U = diag(beta) V
        V_new = U - W S
    plain update: V_new = V
    O  = scale [(Q exp(G)) S + tril(Q K^T * Gamma) V_new]
    S' = exp(G_last) S + (K exp(G_last - G))^T V_new

Everything that does not depend on S runs for all chunks at once as batched
[N*B*H, C, *] matmuls, and so do the outputs once the states S entering every
chunk are known. Only the state hand-over is a Python loop over chunks, never
tokens: two small matmuls per chunk for the delta rule (V_new, then S'), none
without it (a running sum, or a scan with one multiply-add per chunk).

Autograd differentiates all of it (q, k, v, g, beta, initial_state); per-chunk
tensors are split with `unbind` and joined with `cat`/`stack`, so the backward
of the loop is O(N), not the O(N^2) of indexing slices in a loop. When autograd
is not recording, the same math fills preallocated buffers in place instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .naive import compute_dtype

# exp(x) for x < -80 is below 2e-35: zero next to the O(1) terms it is added to, in fp32
# and in fp64 alike. Clamping there keeps exp off its denormal / underflow paths, which are
# 3-15x slower on x86 CPUs, and keeps the (masked) upper triangle of G_r - G_c finite.
_EXP_FLOOR = -80.0


def _exp(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x.clamp(min=_EXP_FLOOR))


def _mul(x: torch.Tensor, y: torch.Tensor, track: bool) -> torch.Tensor:
    """x * y, in place into x (a fresh temporary) when autograd is not recording."""
    return x * y if track else x.mul_(y)


def _to_chunks(x: torch.Tensor, dtype: torch.dtype, n_chunks: int, chunk: int) -> torch.Tensor:
    """[B, T, H, *D] -> [N*B*H, C, *D], zero-padded in T, chunk-major so chunk i is one contiguous block."""
    B, T, H = x.shape[:3]
    tail = x.shape[3:]
    x = x.to(dtype)
    pad = n_chunks * chunk - T
    if pad:
        # F.pad lists dims last-to-first: (D?) then H, then T.
        x = F.pad(x, (0, 0) * len(tail) + (0, 0, 0, pad))
    x = x.view(B, n_chunks, chunk, H, *tail)
    order = (1, 0, 3, 2, *range(4, 4 + len(tail)))
    return x.permute(order).reshape(n_chunks * B * H, chunk, *tail)


class _Gates(NamedTuple):
    """How the gate acts within and across chunks (all [N*BH, ...] but `decay`)."""

    gamma: torch.Tensor  # [NBH, C, C] (or [C, C]): scale * causal mask * exp(G_r - G_c)
    gate: torch.Tensor | None  # [NBH, C, 1]: exp(G), the decay from the chunk start
    q_gate: torch.Tensor  # scale * gate, or the scale alone
    k_to_end: torch.Tensor  # K exp(G_last - G): keys decayed to the chunk's end
    decay: torch.Tensor | None  # [N, BH, 1, 1]: exp(G_last), the decay across the whole chunk


def _gates(
    g: torch.Tensor | None, kc: torch.Tensor, scale: float, n_chunks: int, chunk: int, track: bool
) -> _Gates:
    dtype, device = kc.dtype, kc.device
    # The causal mask carries the scale, so the scores come out scaled at no extra cost.
    mask = torch.ones(chunk, chunk, dtype=dtype, device=device).tril() * scale
    if g is None:
        return _Gates(mask, None, torch.full((1, 1, 1), scale, dtype=dtype, device=device), kc, None)
    G = _to_chunks(g, dtype, n_chunks, chunk).cumsum(-1)  # [NBH, C]
    # Clamped to [-80, 80] before exp: above the diagonal G_r - G_c > 0 for decaying gates and
    # could overflow (the mask then zeroes it); below it, |G_r - G_c| > 80 is beyond any real gate.
    diff = G[:, :, None] - G[:, None, :]
    if track:
        gamma = torch.exp(diff.clamp(_EXP_FLOOR, -_EXP_FLOOR)) * mask
    else:
        gamma = diff.clamp_(_EXP_FLOOR, -_EXP_FLOOR).exp_().mul_(mask)
    gate = _exp(G)[..., None]
    k_to_end = kc * _exp(G[:, -1:] - G)[..., None]
    decay = _exp(G[:, -1]).view(n_chunks, -1, 1, 1)
    return _Gates(gamma, gate, gate * scale, k_to_end, decay)


def chunk_torch(
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
    """The generic recurrence, chunked. Shapes as in `asiarch.kernels.common`.

    Computes in float32 (float64 when an input is float64); o comes back in v's
    dtype, the final state [B, H, K, V] in the compute dtype (None unless asked).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    dtype = compute_dtype(q, k, v, g, beta, initial_state)
    scale = K**-0.5 if scale is None else scale
    BH = B * H
    S0 = (
        q.new_zeros(BH, K, V, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype).reshape(BH, K, V)
    )
    if T == 0:
        return v.new_zeros(B, 0, H, V), (S0.reshape(B, H, K, V) if output_final_state else None)

    # Without autograd recording, buffers are filled in place: fewer copies and allocations.
    track = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, g, beta, initial_state)
    )
    C = chunk_size
    N = -(-T // C)
    qc, kc, vc = (_to_chunks(x, dtype, N, C) for x in (q, k, v))
    kt = kc.transpose(-1, -2)  # one transposed view for both products: one gradient path into k
    gates = _gates(g, kc, scale, N, C, track)
    scores = _mul(torch.bmm(qc, kt), gates.gamma, track)  # P = scale * tril(Q K^T * Gamma)
    if beta is None:
        v_new = vc
        states, final = _plain_states(gates.k_to_end, vc, S0, gates.decay, output_final_state)
    else:
        wu = _delta_solve(_to_chunks(beta, dtype, N, C)[..., None], kc, kt, vc, gates, scale, track)
        states, v_new, final = _delta_states(wu, gates.k_to_end, S0, gates.decay, output_final_state, track)

    o = torch.bmm(qc * gates.q_gate, states).baddbmm_(scores, v_new)  # [NBH, C, V]
    o = o.view(N, B, H, C, V).permute(1, 0, 3, 2, 4).reshape(B, N * C, H, V)
    if N * C != T:
        o = o[:, :T].contiguous()
    final_state = final.reshape(B, H, K, V) if final is not None else None
    return o.to(v.dtype), final_state


def _delta_solve(
    bc: torch.Tensor,
    kc: torch.Tensor,
    kt: torch.Tensor,
    vc: torch.Tensor,
    gates: _Gates,
    scale: float,
    track: bool,
) -> torch.Tensor:
    """[W | U] ([N*BH, C, K + V]) from the WY/UT system (I + A) [W | U] = diag(beta) [K exp(G) | V]."""
    K = kc.shape[-1]
    # gamma carries the scale, so 1/scale goes into the keys; the solve reads only the strict lower
    # triangle, so nothing else needs masking.
    system = _mul(torch.bmm(kc * (bc / scale), kt), gates.gamma, track)
    k_rhs = bc if gates.gate is None else bc * gates.gate
    if track:
        rhs = torch.cat([kc * k_rhs, vc * bc], dim=-1)
    else:
        rhs = kc.new_empty(*kc.shape[:-1], K + vc.shape[-1])
        torch.mul(kc, k_rhs, out=rhs[..., :K])
        torch.mul(vc, bc, out=rhs[..., K:])
    # Without autograd the solve overwrites rhs, which saves it copying rhs first.
    return torch.linalg.solve_triangular(
        system, rhs, upper=False, unitriangular=True, out=None if track else rhs
    )


def _delta_states(
    wu: torch.Tensor,
    k_to_end: torch.Tensor,
    S0: torch.Tensor,
    decay: torch.Tensor | None,
    output_final_state: bool,
    track: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The delta-rule hand-over: V_new_i = U_i - W_i S_i, S_{i+1} = d_i S_i + Kd_i^T V_new_i.

    wu: [N*BH, C, K + V] = [W | U]; k_to_end: [N*BH, C, K]; decay: [N, BH, 1, 1] or None.
    Returns the states entering every chunk and V_new, both [N*BH, ...], and S_N if wanted.
    """
    BH, K, _ = S0.shape
    N = wu.shape[0] // BH
    ws, us, ks = (
        x.unflatten(0, (N, BH)).unbind(0) for x in (wu[..., :K], wu[..., K:], k_to_end.transpose(-1, -2))
    )
    ds = decay.unbind(0) if decay is not None else None
    if not track:
        return _delta_states_no_grad(ws, us, ks, ds, S0, output_final_state)
    S, states, v_new = S0, [], []
    for i in range(N):
        states.append(S)
        v_new.append(torch.baddbmm(us[i], ws[i], S, alpha=-1.0))
        if i < N - 1 or output_final_state:
            # in place on the fresh S * d (autograd does not need it): saves baddbmm copying its input
            S = torch.baddbmm(S, ks[i], v_new[-1]) if ds is None else (S * ds[i]).baddbmm_(ks[i], v_new[-1])
    return torch.cat(states), torch.cat(v_new), (S if output_final_state else None)


def _delta_states_no_grad(
    ws: tuple[torch.Tensor, ...],
    us: tuple[torch.Tensor, ...],
    ks: tuple[torch.Tensor, ...],
    ds: tuple[torch.Tensor, ...] | None,
    S0: torch.Tensor,
    output_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`_delta_states` without autograd: writes into preallocated buffers instead of joining lists."""
    N, (BH, K, V), C = len(ws), S0.shape, us[0].shape[1]
    states = S0.new_empty(N + 1, BH, K, V)
    v_new = S0.new_empty(N, BH, C, V)
    states[0] = S0
    for i in range(N if output_final_state else N - 1):
        torch.baddbmm(us[i], ws[i], states[i], alpha=-1.0, out=v_new[i])
        if ds is None:
            states[i + 1] = states[i]
        else:
            torch.mul(states[i], ds[i], out=states[i + 1])
        states[i + 1].baddbmm_(ks[i], v_new[i])
    if not output_final_state:
        torch.baddbmm(us[-1], ws[-1], states[N - 1], alpha=-1.0, out=v_new[-1])
    final = states[N] if output_final_state else None
    return states[:N].view(N * BH, K, V), v_new.view(N * BH, C, V), final


def _plain_states(
    k_to_end: torch.Tensor,
    vc: torch.Tensor,
    S0: torch.Tensor,
    decay: torch.Tensor | None,
    output_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Linear attention / simple GLA: S_{i+1} = d_i S_i + Kd_i^T V_i, the injections batched up front."""
    BH, K, V = S0.shape
    N = vc.shape[0] // BH
    inject = torch.bmm(k_to_end.transpose(-1, -2), vc).view(N, BH, K, V)
    if decay is None:
        running = torch.cumsum(inject, dim=0) + S0  # no gate: the states are a prefix sum
        states = torch.cat([S0[None], running[:-1]])
        final = running[-1] if output_final_state else None
    else:
        ds, injects = decay.unbind(0), inject.unbind(0)
        state_list = [S0]
        for i in range(N - 1):
            state_list.append(torch.addcmul(injects[i], state_list[-1], ds[i]))
        states = torch.stack(state_list)
        final = torch.addcmul(injects[-1], state_list[-1], ds[-1]) if output_final_state else None
    return states.view(N * BH, K, V), final
