"""chunk_triton against a float64 per-token reference, forward and backward, all four families.

Without a GPU the kernels run in the Triton interpreter on CPU tensors
(tests/conftest.py sets TRITON_INTERPRET=1), so shapes are small but odd: head
dims that are not powers of two, several chunks of 16 and a ragged last chunk.
Every buffer the kernels allocate starts out NaN (`poison_buffers`), so an element
a kernel fails to write, or reads before it is written, shows up as a failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from asiarch.kernels.common import (
    triton_chunk,
    triton_chunk_bwd,
    triton_chunk_fwd,
    triton_normalize,
    triton_recurrent,
    triton_utils,
)
from asiarch.kernels.common.triton_chunk import chunk_triton
from asiarch.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() and not triton_utils.is_interpreter() else "cpu"

# family: (has g, has beta)
FAMILIES = {
    "linear_attn": (False, False),
    "simple_gla": (True, False),
    "delta_rule": (False, True),
    "gated_delta_rule": (True, True),
}
# FLA's tolerances (relative RMS error); "*" is the default for gradients not listed.
TOLERANCES = {
    "linear_attn": {"o": 1e-3, "ht": 1e-3, "*": 1e-3},
    "simple_gla": {"o": 5e-3, "ht": 5e-3, "*": 5e-3},
    "delta_rule": {"o": 6e-3, "ht": 6e-3, "*": 8e-3},
    "gated_delta_rule": {"o": 5e-3, "ht": 5e-3, "*": 8e-3, "dbeta": 2e-2, "dg": 2e-2},
}


class _PoisonedTorch(ModuleType):
    """`torch` for the kernel modules, except that new buffers are filled with NaN."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> object:
        return getattr(torch, name)

    @staticmethod
    def _nan(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(math.nan) if t.is_floating_point() else t

    def empty(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self._nan(torch.empty(*args, **kwargs))  # type: ignore[call-overload]

    def empty_like(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self._nan(torch.empty_like(*args, **kwargs))  # type: ignore[call-overload]


def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every buffer the kernel modules allocate start out NaN (undone by monkeypatch at teardown)."""
    poisoned = _PoisonedTorch()
    kernels = (
        triton_utils,
        triton_chunk_fwd,
        triton_chunk_bwd,
        triton_chunk,
        triton_recurrent,
        triton_normalize,
    )
    for module in kernels:
        monkeypatch.setattr(module, "torch", poisoned)


@pytest.fixture(autouse=True)
def poison_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    poison(monkeypatch)


def reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor | None,
    scale: float,
    h0: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence of asiarch.kernels.common token by token, in float64 (differentiable)."""
    q, k, v = q.double(), k.double(), v.double()
    B, T, H, K = q.shape
    S = h0.double() if h0 is not None else q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        if g is not None:
            S = S * g[:, t].double().exp()[..., None, None]
        update = v[:, t]
        if beta is not None:
            update = (update - torch.einsum("bhkv,bhk->bhv", S, k[:, t])) * beta[:, t].double()[..., None]
        S = S + k[:, t, :, :, None] * update[:, :, None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]) * scale)
    return torch.stack(out, 1), S


def make_inputs(
    family: str,
    shape: tuple[int, int, int, int, int],
    gate: float = 1.0,
    with_h0: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Inputs as in FLA's tests: l2-normalised keys for delta rules, beta = sigmoid, g = logsigmoid * gate."""
    has_g, has_beta = FAMILIES[family]
    B, T, H, K, V = shape
    gen = torch.Generator().manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen, dtype=torch.float64)

    k = randn(B, T, H, K)
    inputs = {
        "q": randn(B, T, H, K),
        "k": F.normalize(k, dim=-1) if has_beta else k,
        "v": randn(B, T, H, V),
        "g": F.logsigmoid(randn(B, T, H)) * gate if has_g else None,
        "beta": torch.sigmoid(randn(B, T, H)) if has_beta else None,
        "h0": randn(B, H, K, V) if with_h0 else None,
    }
    return {n: t.to(DEVICE, dtype) if t is not None else None for n, t in inputs.items()}


def check_family(
    fn: Callable[..., tuple[torch.Tensor, torch.Tensor | None]],
    family: str,
    shape: tuple[int, int, int, int, int],
    gate: float,
    with_h0: bool,
    final_state: bool,
    chunk_size: int = 16,
    seed: int = 0,
) -> None:
    """Forward (o, final state) and every gradient against the float64 reference."""
    tol = TOLERANCES[family]
    x = make_inputs(family, shape, gate, with_h0, seed=seed)
    names = [n for n, t in x.items() if t is not None]
    scale = shape[3] ** -0.5

    ref_in = {n: t.double().requires_grad_() for n, t in x.items() if t is not None}
    ref_o, ref_ht = reference(*(ref_in.get(n) for n in ("q", "k", "v", "g", "beta")), scale, ref_in.get("h0"))
    gen = torch.Generator().manual_seed(seed + 1)
    do = torch.randn(ref_o.shape, generator=gen, dtype=torch.float64)
    dht = torch.randn(ref_ht.shape, generator=gen, dtype=torch.float64)
    ref_loss = (ref_o * do).sum() + ((ref_ht * dht).sum() if final_state else 0)
    ref_grads = torch.autograd.grad(ref_loss, [ref_in[n] for n in names])

    tri_in = {n: t.detach().clone().requires_grad_() for n, t in x.items() if t is not None}
    o, ht = fn(
        tri_in["q"], tri_in["k"], tri_in["v"], tri_in.get("g"), tri_in.get("beta"), scale=scale,
        initial_state=tri_in.get("h0"), output_final_state=final_state, chunk_size=chunk_size,
    )  # fmt: skip
    assert o.dtype == x["v"].dtype
    assert_close("o", ref_o, o, tol["o"])
    if final_state:
        assert ht.dtype == torch.float32
        assert_close("ht", ref_ht, ht, tol["ht"])
        loss = (o * do.to(o)).sum() + (ht * dht.to(ht)).sum()
    else:
        assert ht is None
        loss = (o * do.to(o)).sum()
    grads = torch.autograd.grad(loss, [tri_in[n] for n in names])
    for n, ref_grad, grad in zip(names, ref_grads, grads, strict=True):
        assert grad.dtype == tri_in[n].dtype
        assert_close(f"d{n}", ref_grad, grad, tol.get(f"d{n}", tol["*"]))


# (B, T, H, K, V), gate strength, initial state, final state output: T = 19, 37, 70 with chunks of 16
# give 2, 3 and 5 chunks, all with a ragged last chunk; K, V of 24 and 20 are not powers of two.
CASES = {
    "1x19x1x24-h0-ht": ((1, 19, 1, 24, 24), 1.0, True, True),
    "2x37x2x20-gate0.1-ht": ((2, 37, 2, 20, 20), 0.1, False, True),
    "1x70x2x16-gate10-h0": ((1, 70, 2, 16, 16), 10.0, True, False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_chunk_forward_backward(family: str, case: str) -> None:
    shape, gate, with_h0, final_state = CASES[case]
    check_family(chunk_triton, family, shape, gate, with_h0, final_state)


@pytest.mark.parametrize(
    ("chunk_size", "shape"),
    [(32, (1, 45, 1, 32, 40)), (64, (1, 80, 1, 80, 24))],  # K = 80: two K-blocks in the backward
)
@pytest.mark.parametrize("family", ["simple_gla", "gated_delta_rule"])
def test_chunk_sizes(family: str, chunk_size: int, shape: tuple[int, int, int, int, int]) -> None:
    check_family(chunk_triton, family, shape, 1.0, True, True, chunk_size=chunk_size, seed=1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_chunk_forward_fp16(family: str) -> None:
    x = make_inputs(family, (1, 37, 2, 24, 20), dtype=torch.float16, seed=2)
    scale = 24**-0.5
    ref_o, ref_ht = reference(x["q"], x["k"], x["v"], x["g"], x["beta"], scale, x["h0"])
    with torch.no_grad():
        o, ht = chunk_triton(
            x["q"], x["k"], x["v"], x["g"], x["beta"], scale, x["h0"], output_final_state=True, chunk_size=16
        )
    assert o.dtype == torch.float16
    assert ht.dtype == torch.float32
    assert_close("o", ref_o, o, 5e-3)
    assert_close("ht", ref_ht, ht, 5e-3)


def test_chunk_short_sequence_single_token() -> None:
    """T = 1 (one partial chunk): the output is scale * (h0 decayed + k v^T-update)^T q."""
    check_family(chunk_triton, "gated_delta_rule", (2, 1, 1, 16, 16), 1.0, True, True)


@pytest.mark.parametrize("fn", [chunk_triton, triton_recurrent.fused_recurrent_triton])
def test_empty_sequence_passes_the_state_through(fn: Callable[..., tuple[torch.Tensor, ...]]) -> None:
    x = make_inputs("gated_delta_rule", (2, 0, 1, 16, 24))
    o, ht = fn(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x["h0"], output_final_state=True)
    assert o.shape == (2, 0, 1, 24)
    assert torch.equal(ht, x["h0"])


def test_chunk_rejects_bad_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    x = make_inputs("linear_attn", (1, 8, 1, 16, 16))
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_triton(x["q"], x["k"], x["v"], chunk_size=48)
    with pytest.raises(ValueError, match="v must be"):
        chunk_triton(x["q"], x["k"], x["v"][:, :4])
    big = torch.zeros(1, 8, 1, 512, device=DEVICE)
    with pytest.raises(ValueError, match="head dim"):
        chunk_triton(big, big, x["v"])
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="CUDA tensors"):
            chunk_triton(x["q"], x["k"], x["v"])
