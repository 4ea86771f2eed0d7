"""Unpadding helpers for variable-length batches (fla.layers.utils).

FLA layers given a padding mask remove the padded tokens, run the kernels on
one packed sequence with `cu_seqlens`, and scatter the outputs back. These are
the helpers they use, with FLA's (flash-attn's) signatures and conventions:
flattened token indices are int64, cu_seqlens is int32 with a leading 0, and
max_seqlen is a Python int. Plain indexing ops, so autograd covers them.
"""

from __future__ import annotations

import torch


def get_unpad_data(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """attention_mask [B, T] (1/True = token) -> (indices [n], cu_seqlens [B + 1] int32, max_seqlen).

    `indices` index the flattened [B * T] positions of the real tokens, in order.
    """
    lens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = torch.nn.functional.pad(lens.cumsum(0, dtype=torch.int32), (1, 0))
    return indices, cu_seqlens, int(lens.max().item()) if lens.numel() else 0


def index_first_axis(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """x[indices] along dim 0 (x: [n_all, ...]); differentiable in x."""
    if x.ndim < 2:
        raise ValueError("index_first_axis expects at least 2 dims ([tokens, ...])")
    return x.index_select(0, indices)


def index_put_first_axis(x: torch.Tensor, indices: torch.Tensor, first_axis_dim: int) -> torch.Tensor:
    """Zeros of [first_axis_dim, ...] with x written at `indices`; differentiable in x."""
    if indices.ndim != 1 or x.ndim < 2:
        raise ValueError("index_put_first_axis expects 1-D indices and x with at least 2 dims")
    out = x.new_zeros(first_axis_dim, *x.shape[1:])
    return out.index_copy(0, indices, x)


def pad_input(
    hidden_states: torch.Tensor,
    indices: torch.LongTensor,
    batch_size: int,
    seq_len: int,
) -> torch.Tensor:
    """Inverse of unpadding: [n_tokens, ...] -> [batch_size, seq_len, ...], zeros at padding."""
    output = index_put_first_axis(hidden_states, indices, batch_size * seq_len)
    return output.reshape(batch_size, seq_len, *output.shape[1:])


def unpad_input(
    q: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    attention_mask: torch.Tensor,
    q_len: int,
    keepdim: bool = False,
) -> tuple[
    torch.Tensor,
    tuple[torch.Tensor, ...],
    torch.Tensor,
    tuple[torch.Tensor, torch.Tensor],
    tuple[int, int],
]:
    """Unpad a query and key/value-like states (fla.layers.utils.unpad_input).

    Returns (q, states, indices_q, (cu_seqlens_q, cu_seqlens_k), (max_seqlen_q, max_seqlen_k)),
    with a leading 1 on q and states when keepdim. q_len must equal the states'
    length (prefill) or be 1 (decoding), as in FLA.
    """
    indices_k, cu_seqlens_k, max_seqlen_k = get_unpad_data(attention_mask)
    batch_size, seq_len = states[0].shape[:2]
    unpadded = tuple(
        index_first_axis(s.reshape(batch_size * seq_len, *s.shape[2:]), indices_k) for s in states
    )
    if q_len == seq_len:
        q = index_first_axis(q.reshape(batch_size * seq_len, *q.shape[2:]), indices_k)
        cu_seqlens_q, max_seqlen_q, indices_q = cu_seqlens_k, max_seqlen_k, indices_k
    elif q_len == 1:
        max_seqlen_q = 1
        cu_seqlens_q = torch.arange(batch_size + 1, dtype=torch.int32, device=q.device)
        indices_q = cu_seqlens_q[:-1]
        q = q.squeeze(1)
    else:
        raise NotImplementedError(
            "We only support either q_len == k_len (prefilling) or q_len == 1 (decoding)"
        )
    if keepdim:
        q = q.unsqueeze(0)
        unpadded = tuple(s.unsqueeze(0) for s in unpadded)
    return q, unpadded, indices_q, (cu_seqlens_q, cu_seqlens_k), (max_seqlen_q, max_seqlen_k)
