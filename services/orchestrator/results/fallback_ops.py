"""Pure-PyTorch stand-ins for FLA's recurrences (fla.ops.*), copied into `asiarch export` files.

The CLI never imports this module: export.py reads its text and copies the top-level
definitions a candidate needs (with the helpers they call, here or in fallback_modules.py)
into a standalone file. So a definition may use only `torch` and other definitions of these
two files, and names carry a `fallback` prefix so they cannot clash with the candidate's own.

Semantics are asiarch.kernels' (which follow FLA 0.5): the per-token reference of
kernels/common/naive.py with the options of kernels/common/dispatch.py. Checked against
asiarch.kernels in tests/orchestrator/test_results.py.
"""

from __future__ import annotations

import torch

from .fallback_modules import fallback_l2norm


def _fallback_recurrence(
    fn: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor | None,
    scale: float | None,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm_in_kernel: bool = False,
    normalize: bool = False,
    reverse: bool = False,
    state_v_first: bool = False,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per head, token by token: S <- exp(g_t) S; S <- S + k_t (beta_t (v_t - S^T k_t))^T (or + k_t v_t^T
    without beta); o_t = scale S^T q_t. q, k: [B, T, H, K]; v: [B, T, H, V]; g, beta: [B, T, H]."""
    if head_first:
        raise ValueError(f"{fn}: head_first=True is not supported; pass [B, T, H, ...] tensors")
    if cu_seqlens is not None:
        raise NotImplementedError(f"{fn}: cu_seqlens (packed sequences) needs flash-linear-attention")
    if q.dim() != 4:
        raise ValueError(f"{fn}: q must be a 4-D tensor [B, T, H, K], got {tuple(q.shape)}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    if initial_state is not None and state_v_first:
        initial_state = initial_state.transpose(-1, -2)
    if use_qk_l2norm_in_kernel:
        q, k = fallback_l2norm(q), fallback_l2norm(k)
    if reverse:
        q, k, v, g, beta = (x.flip(1) if x is not None else None for x in (q, k, v, g, beta))
    tensors = (q, k, v, g, beta, initial_state)
    dtype = (
        torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32
    )
    # unbind once: indexing x[:, t] in the loop makes autograd scatter into full-size zeros each step
    qs, ks, vs = (x.to(dtype).unbind(1) for x in (q, k, v))
    decays = g.to(dtype).exp()[..., None, None].unbind(1) if g is not None else None
    betas = beta.to(dtype)[..., None].unbind(1) if beta is not None else None
    S = q.new_zeros(B, H, K, V, dtype=dtype) if initial_state is None else initial_state.to(dtype)
    outputs = []
    for t in range(T):
        if decays is not None:
            S = S * decays[t]
        update = vs[t] if betas is None else (vs[t] - (S * ks[t][..., None]).sum(-2)) * betas[t]
        S = S + ks[t][..., :, None] * update[..., None, :]
        outputs.append((S * qs[t][..., None]).sum(-2) * scale)
    o = torch.stack(outputs, dim=1) if outputs else v.new_zeros(B, 0, H, V, dtype=dtype)
    o = o.to(v.dtype)
    if normalize:
        # FLA's normalised linear attention: divide by <scale q_t, sum_{s<=t} k_s>, without the initial state
        z_dtype = torch.promote_types(q.dtype, torch.float32)
        z = (q.to(z_dtype) * scale * k.to(z_dtype).cumsum(1)).sum(-1, keepdim=True)
        o = (o.to(z_dtype) / (z + 1e-10)).to(o.dtype)
    if reverse:
        o = o.flip(1)
    final = S if output_final_state else None
    if final is not None and state_v_first:
        final = final.transpose(-1, -2)
    return o, final


def _fallback_gate(
    fn: str, q: torch.Tensor, g: torch.Tensor | None, g_gamma: torch.Tensor | None
) -> torch.Tensor | None:
    """The per-token log decay [B, T, H]: g, or retention's constant per-head g_gamma [H]."""
    if g_gamma is None:
        return g
    if g is not None:
        raise ValueError(f"{fn}: pass either g [B, T, H] or g_gamma [H], not both")
    B, T, H = q.shape[:3]
    return g_gamma.view(1, 1, H).expand(B, T, H)


def fallback_chunk_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    normalize: bool = True,
    head_first: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _fallback_recurrence(
        "chunk_linear_attn",
        q,
        k,
        v,
        None,
        None,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        normalize=normalize,
        head_first=head_first,
    )


def fallback_fused_recurrent_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    normalize: bool = False,
    head_first: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _fallback_recurrence(
        "fused_recurrent_linear_attn",
        q,
        k,
        v,
        None,
        None,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        normalize=normalize,
        head_first=head_first,
    )


def fallback_chunk_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    g_gamma: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    *,
    state_v_first: bool = False,
    cu_seqlens_cpu: torch.Tensor | None = None,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    gate = _fallback_gate("chunk_simple_gla", q, g, g_gamma)
    return _fallback_recurrence(
        "chunk_simple_gla",
        q,
        k,
        v,
        gate,
        None,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens if cu_seqlens_cpu is None else cu_seqlens_cpu,
        state_v_first=state_v_first,
        head_first=head_first,
    )


def fallback_fused_recurrent_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    g_gamma: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    reverse: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    *,
    state_v_first: bool = False,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    gate = _fallback_gate("fused_recurrent_simple_gla", q, g, g_gamma)
    return _fallback_recurrence(
        "fused_recurrent_simple_gla",
        q,
        k,
        v,
        gate,
        None,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        reverse=reverse,
        state_v_first=state_v_first,
        head_first=head_first,
    )


def fallback_chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    *,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _fallback_recurrence(
        "chunk_delta_rule",
        q,
        k,
        v,
        None,
        beta,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        head_first=head_first,
    )


def fallback_fused_recurrent_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    *,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    beta = torch.ones_like(q[..., 0]) if beta is None else beta
    return _fallback_recurrence(
        "fused_recurrent_delta_rule",
        q,
        k,
        v,
        None,
        beta,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        head_first=head_first,
    )


def fallback_chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    *,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _fallback_recurrence(
        "chunk_gated_delta_rule",
        q,
        k,
        v,
        g,
        beta,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        head_first=head_first,
    )


def fallback_fused_recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    gk: torch.Tensor | None = None,
    gv: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if gk is not None or gv is not None:
        raise ValueError(
            "fused_recurrent_gated_delta_rule: per-key/per-value decays gk, gv are not supported"
        )
    beta = torch.ones_like(q[..., 0]) if beta is None else beta
    return _fallback_recurrence(
        "fused_recurrent_gated_delta_rule",
        q,
        k,
        v,
        g,
        beta,
        scale,
        initial_state,
        output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
    )
