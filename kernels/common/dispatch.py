"""Backend choice and the input handling every family shares.

The four families differ only in which of g / beta they pass to the generic
core, so validation, the FLA extras (use_qk_l2norm_in_kernel, cu_seqlens,
reverse, state_v_first, normalize) and the choice between the Triton and the
PyTorch core live here once, in `run`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from itertools import pairwise
from typing import Literal, NamedTuple

import torch

from ..modules.l2norm import l2norm
from .chunk_torch import chunk_torch
from .naive import naive_recurrent
from .normalize import normalize_torch

ENV_VAR = "ASIARCH_KERNEL_BACKEND"
Backend = Literal["triton", "torch"]
Form = Literal["chunk", "fused_recurrent", "naive"]
Core = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
# (q, k, o, scale) -> o / <scale q_t, sum_{s<=t} k_s>: FLA's `normalize` of linear attention.
Normalizer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
_BACKENDS = ("auto", "torch", "triton")
# A standalone copy of the kernels (kernels/standalone.py, for `asiarch results export`) leaves the
# Triton modules out; there `auto` runs the PyTorch core on every device. In asiarch they are always here.
_TRITON_CORES = importlib.util.find_spec(f"{__package__}.triton_chunk") is not None


def backend(tensor: torch.Tensor) -> Backend:
    """Which core runs for inputs like `tensor`: ASIARCH_KERNEL_BACKEND = auto (default) | torch | triton.

    auto picks Triton for CUDA tensors and PyTorch for everything else (and for CUDA tensors in a
    standalone copy, which has no Triton kernels); triton forces the Triton kernels (e.g. with
    TRITON_INTERPRET=1 on CPU).
    """
    raw = os.environ.get(ENV_VAR, "auto")
    value = raw.strip().lower() or "auto"
    if value not in _BACKENDS:
        raise ValueError(f"{ENV_VAR}={raw!r} is not one of {', '.join(_BACKENDS)}")
    if value == "auto":
        return "triton" if tensor.is_cuda and _TRITON_CORES else "torch"
    return "triton" if value == "triton" else "torch"


def _fail(fn: str, message: str) -> None:
    raise ValueError(f"{fn}: {message}")


def _check_tensor(fn: str, name: str, x: object, shape: tuple[int, ...] | None, device: torch.device) -> None:
    if not isinstance(x, torch.Tensor):
        _fail(fn, f"{name} must be a torch.Tensor, got {type(x).__name__}")
    assert isinstance(x, torch.Tensor)
    if not x.is_floating_point():
        _fail(fn, f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if shape is not None and tuple(x.shape) != shape:
        _fail(fn, f"{name} has shape {tuple(x.shape)}, expected {shape}")
    if x.device != device:
        _fail(fn, f"{name} is on {x.device} but q is on {device}")


def check_inputs(
    fn: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    state_v_first: bool = False,
) -> None:
    """Raise ValueError (prefixed with the public function's name) unless the inputs fit

    q, k: [B, T, H, K]; v: [B, T, H, V]; g, beta: [B, T, H]; initial_state: [N, H, K, V]
    ([N, H, V, K] with state_v_first) where N = B, or the number of sequences with
    cu_seqlens (then B must be 1 and cu_seqlens an increasing [N + 1] integer tensor 0..T).
    """
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        got = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        _fail(fn, f"q must be a 4-D tensor [B, T, H, K], got {got}")
    B, T, H, K = q.shape
    _check_tensor(fn, "q", q, None, q.device)
    _check_tensor(fn, "k", k, (B, T, H, K), q.device)
    if not isinstance(v, torch.Tensor) or v.dim() != 4 or tuple(v.shape[:3]) != (B, T, H):
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        _fail(
            fn, f"v has shape {got}, expected [B, T, H, V] = ({B}, {T}, {H}, V) to match q {tuple(q.shape)}"
        )
    _check_tensor(fn, "v", v, None, q.device)
    V = v.shape[-1]
    if g is not None:
        _check_tensor(fn, "g", g, (B, T, H), q.device)
    if beta is not None:
        if beta.dim() == 4:
            _fail(fn, f"head-wise beta {tuple(beta.shape)} is not supported; beta must be [B, T, H]")
        _check_tensor(fn, "beta", beta, (B, T, H), q.device)
    N = B
    if cu_seqlens is not None:
        if (
            not isinstance(cu_seqlens, torch.Tensor)
            or cu_seqlens.dim() != 1
            or cu_seqlens.is_floating_point()
        ):
            _fail(fn, "cu_seqlens must be a 1-D integer tensor [N + 1]")
        if B != 1:
            _fail(fn, f"with cu_seqlens the batch size must be 1 (flatten the sequences), got B = {B}")
        bounds = cu_seqlens.tolist()
        if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != T:
            _fail(fn, f"cu_seqlens must start at 0 and end at T = {T}, got {bounds}")
        if any(b < a for a, b in pairwise(bounds)):
            _fail(fn, f"cu_seqlens must be non-decreasing, got {bounds}")
        N = len(bounds) - 1
    if initial_state is not None:
        expected = (N, H, V, K) if state_v_first else (N, H, K, V)
        layout = "[N, H, V, K]" if state_v_first else "[N, H, K, V]"
        _check_tensor(fn, f"initial_state {layout}", initial_state, expected, q.device)


def _core(form: Form, q: torch.Tensor) -> Core:
    if form == "naive":
        return naive_recurrent
    if backend(q) == "torch":
        return chunk_torch
    # Imported lazily: the Triton modules need triton (absent on some CPU installs) and a GPU or
    # the interpreter.
    if form == "chunk":
        from .triton_chunk import chunk_triton

        return chunk_triton
    from .triton_recurrent import fused_recurrent_triton

    return fused_recurrent_triton


def _normalizer(form: Form, q: torch.Tensor) -> Normalizer:
    """The fused Triton normaliser beside the Triton cores; the PyTorch one beside the others."""
    if form == "naive" or backend(q) == "torch":
        return normalize_torch
    from .triton_normalize import normalize_triton

    return normalize_triton


def run(
    fn: str,
    form: Form,
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
    reverse: bool = False,
    normalize: bool = False,
    state_v_first: bool = False,
    head_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate, apply the FLA options, and run the core chosen by `backend` (or the naive reference)."""
    if head_first:
        _fail(fn, "head_first=True is not supported (FLA deprecated it); pass [B, T, H, ...] tensors")
    check_inputs(fn, q, k, v, g, beta, initial_state, cu_seqlens, state_v_first)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if initial_state is not None and state_v_first:
        initial_state = initial_state.transpose(-1, -2)
    if use_qk_l2norm_in_kernel:
        q, k = l2norm(q), l2norm(k)
    normalizer = _normalizer(form, q) if normalize else None
    options = _Pass(_core(form, q), scale, output_final_state, reverse, normalizer)
    # The cores fix their own compute dtype (fp32 inside, the output in v's dtype), like FLA's Triton
    # kernels, which autocast never reaches: under a bf16 autocast it must not recast their matmuls.
    with torch.autocast(q.device.type, enabled=False):
        if cu_seqlens is None:
            o, final = _run_batch(options, q, k, v, g, beta, initial_state)
        else:
            o, final = _run_varlen(options, q, k, v, g, beta, initial_state, cu_seqlens.tolist())
    if final is not None and state_v_first:
        final = final.transpose(-1, -2)
    return o, final


class _Pass(NamedTuple):
    """The core `run` chose and the options it applies around it, for every batch of one call."""

    core: Core
    scale: float
    output_final_state: bool
    reverse: bool
    normalizer: Normalizer | None  # None: the output is not normalised


def _run_batch(
    options: _Pass,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    core, scale, output_final_state, reverse, normalizer = options
    if reverse:
        # The reverse recurrence is the forward one on the time-flipped sequence.
        q, k, v, g, beta = (x.flip(1) if x is not None else None for x in (q, k, v, g, beta))
    o, final = core(q, k, v, g, beta, scale, initial_state, output_final_state)
    if normalizer is not None:
        # Per sequence (a packed batch arrives here one sequence per row), without the initial state.
        o = normalizer(q, k, o, scale)
    return (o.flip(1) if reverse else o), final


def _run_varlen(
    options: _Pass,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    bounds: list[int],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Packed sequences [1, sum T_n, ...] -> outputs [1, sum T_n, ...], final states [N, H, K, V].

    Each sequence runs on its own. When padding them to a common length costs at most
    2x, they run as one padded batch: zero k, v, beta and g = 0 leave the state
    untouched, so padding at the end (or, reversed, at the start) changes nothing.
    Otherwise they run one after another.
    """
    lengths = [b - a for a, b in pairwise(bounds)]
    n, longest, total = len(lengths), max(lengths), bounds[-1]
    tensors = (q, k, v, g, beta)
    if n * longest > 2 * total:
        # split, not slicing in the loop: one backward node instead of one full-size gradient per sequence
        pieces = [x.split(lengths, dim=1) if x is not None else (None,) * n for x in tensors]
        h0s = initial_state.split(1) if initial_state is not None else (None,) * n
        outs, finals = [], []
        for i in range(n):
            seg = (p[i] for p in pieces)
            o, final = _run_batch(options, *seg, h0s[i])
            outs.append(o)
            finals.append(final)
        return torch.cat(outs, dim=1), (torch.cat(finals) if options.output_final_state else None)

    # Token t of sequence i goes to row i * longest + (t - start_i) of the padded batch.
    device = q.device
    seq = torch.repeat_interleave(torch.arange(n, device=device), torch.tensor(lengths, device=device))
    starts = torch.tensor(bounds[:-1], device=device)
    index = seq * longest + torch.arange(total, device=device) - starts[seq]

    def pack(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        padded = x.new_zeros((n * longest, *x.shape[2:])).index_copy(0, index, x[0])
        return padded.view(n, longest, *x.shape[2:])

    packed = (pack(x) for x in tensors)
    o, final = _run_batch(options, *packed, initial_state)
    o = o.reshape(n * longest, *o.shape[2:]).index_select(0, index).unsqueeze(0)
    return o, final
