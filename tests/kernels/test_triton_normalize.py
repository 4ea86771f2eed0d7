"""The fused Triton normaliser of linear attention (`triton_normalize`) against the PyTorch one in float64.

Runs in the Triton interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1). Every buffer the
kernels allocate starts out NaN (test_triton_chunk's `poison`), so an element they fail to write shows
up. Shapes: a ragged last chunk, head dims that are no power of two, V != K, and a head dim above 128
(the 32-token chunks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_triton_chunk import poison

from asiarch.kernels.common import dispatch
from asiarch.kernels.common.normalize import normalize_torch
from asiarch.kernels.common.triton_normalize import NormalizeTritonFunction, normalize_triton
from asiarch.kernels.linear_attn import chunk_linear_attn, fused_recurrent_linear_attn
from asiarch.kernels.testing import assert_close

Shape = tuple[int, int, int, int, int]  # B, T, H, K, V


@pytest.fixture(autouse=True)
def poison_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    poison(monkeypatch)


def positive_features(shape: Shape, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """elu + 1 features, as linear attention's feature maps give: <q_t, sum k_s> stays away from 0."""
    B, T, H, K, V = shape
    return {
        "q": (F.elu(torch.randn(B, T, H, K)) + 1).to(dtype),
        "k": (F.elu(torch.randn(B, T, H, K)) + 1).to(dtype),
        "o": torch.randn(B, T, H, V).to(dtype),
    }


Normalizer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def normalized_with_grads(
    fn: Normalizer, x: dict[str, torch.Tensor], do: torch.Tensor, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    leaves = {n: t.detach().to(dtype).requires_grad_() for n, t in x.items()}
    out = fn(leaves["q"], leaves["k"], leaves["o"], leaves["q"].shape[-1] ** -0.5)
    out.backward(do.to(dtype))
    return {"o_n": out.detach(), **{f"d{n}": t.grad for n, t in leaves.items()}}


@pytest.mark.parametrize(
    "shape",
    [(2, 130, 3, 60, 48), (1, 64, 1, 16, 16), (1, 7, 2, 256, 100), (3, 1, 2, 32, 32)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_forward_and_every_gradient_match_the_pytorch_normaliser(shape: Shape) -> None:
    x = positive_features(shape)
    do = torch.randn(*shape[:3], shape[4])
    reference = normalized_with_grads(normalize_torch, x, do, torch.float64)
    got = normalized_with_grads(normalize_triton, x, do, torch.float32)
    for name, ref in reference.items():
        assert got[name].dtype == torch.float32
        assert_close(f"{shape} {name}", ref, got[name], 1e-5)


def test_the_key_sum_runs_across_chunks_and_restarts_per_sequence() -> None:
    """Token t of a sequence divides by the keys of tokens 0..t of that sequence only."""
    B, T, H, K = 2, 150, 1, 16
    q, k = torch.ones(B, T, H, K), torch.ones(B, T, H, K)
    k[1] *= 2.0
    o = torch.ones(B, T, H, 4)
    out = normalize_triton(q, k, o, 1.0)
    t = torch.arange(1, T + 1, dtype=torch.float32)
    expected = torch.stack([1 / (K * t), 1 / (2 * K * t)])
    assert_close("1 / (K (t + 1))", expected[:, :, None, None].expand_as(out), out, 1e-6)


def test_an_empty_sequence_is_returned_as_is() -> None:
    x = positive_features((2, 0, 2, 16, 8))
    assert normalize_triton(x["q"], x["k"], x["o"], 0.25) is x["o"]


def test_the_triton_backend_normalises_with_the_fused_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """chunk_linear_attn(normalize=True) on the Triton path: same result and gradients as the PyTorch
    path, through NormalizeTritonFunction rather than eager ops; packed sequences restart the key sum."""
    x = {n: t for n, t in positive_features((1, 45, 2, 16, 16)).items() if n != "o"}
    x["v"] = torch.randn(1, 45, 2, 16)
    cu_seqlens = torch.tensor([0, 20, 45])

    def run(
        backend: str, fn: Callable[..., Any] = chunk_linear_attn, **kw: object
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        monkeypatch.setenv(dispatch.ENV_VAR, backend)
        leaves = {n: t.clone().requires_grad_() for n, t in x.items()}
        o, _ = fn(**leaves, normalize=True, **kw)
        o.backward(torch.ones_like(o))
        return o, leaves

    o_torch, grads_torch = run("torch")
    assert o_torch.grad_fn is not None and "NormalizeTriton" not in type(o_torch.grad_fn).__name__
    o_triton, grads_triton = run("triton")
    assert type(o_triton.grad_fn).__name__ == f"{NormalizeTritonFunction.__name__}Backward"
    assert_close("o", o_torch, o_triton, 1e-5)
    for n in x:
        assert_close(f"d{n}", grads_torch[n].grad, grads_triton[n].grad, 1e-5)
    packed_torch, _ = run("torch", cu_seqlens=cu_seqlens)
    packed_triton, _ = run("triton", fused_recurrent_linear_attn, cu_seqlens=cu_seqlens)
    assert_close("packed", packed_torch, packed_triton, 1e-5)
