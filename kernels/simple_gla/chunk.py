"""Simple GLA / retention (scalar per-head decay), chunked form; FLA's `chunk_simple_gla`."""

from __future__ import annotations

import torch

from ..common.dispatch import run


def resolve_gate(
    fn: str, q: torch.Tensor, g: torch.Tensor | None, g_gamma: torch.Tensor | None
) -> torch.Tensor | None:
    """The per-token log decay [B, T, H]: g, or the constant per-head g_gamma [H] broadcast over B and T."""
    if g_gamma is None or not isinstance(q, torch.Tensor) or q.dim() != 4:
        return g  # with a malformed q, `run` reports the problem with q
    if g is not None:
        raise ValueError(f"{fn}: pass either g [B, T, H] or g_gamma [H], not both")
    B, T, H = q.shape[:3]
    if not isinstance(g_gamma, torch.Tensor) or tuple(g_gamma.shape) != (H,):
        got = tuple(g_gamma.shape) if isinstance(g_gamma, torch.Tensor) else type(g_gamma).__name__
        raise ValueError(f"{fn}: g_gamma has shape {got}, expected [H] = ({H},)")
    # Contiguous so the Triton kernels can read it like any other gate tensor.
    return g_gamma.view(1, 1, H).expand(B, T, H).contiguous()


def chunk_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    g_gamma: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.LongTensor | None = None,
    *,
    state_v_first: bool = False,
    cu_seqlens_cpu: torch.LongTensor | None = None,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = scale * S_t^T q_t.

    q, k: [B, T, H, K]; v: [B, T, H, V]; g: [B, T, H] log decay, or g_gamma: [H]
    (retention's constant per-head log decay); initial_state: [N, H, K, V]
    ([N, H, V, K] with state_v_first). Returns (o [B, T, H, V], final state or None).
    """
    gate = resolve_gate("chunk_simple_gla", q, g, g_gamma)
    return run(
        "chunk_simple_gla",
        "chunk",
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
