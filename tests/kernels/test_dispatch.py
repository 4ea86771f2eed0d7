"""Backend selection, routing to the Triton/PyTorch cores, and the shared input validation."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch

from asiarch.kernels.common import dispatch
from asiarch.kernels.common.dispatch import ENV_VAR, backend, check_inputs, l2norm
from asiarch.kernels.common.naive import naive_recurrent
from asiarch.kernels.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
from asiarch.kernels.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
from asiarch.kernels.linear_attn import chunk_linear_attn, fused_recurrent_linear_attn
from asiarch.kernels.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla
from asiarch.kernels.testing import assert_close

B, T, H, K, V = 1, 12, 2, 8, 4


def tensors() -> dict[str, torch.Tensor]:
    return {
        "q": torch.randn(B, T, H, K),
        "k": torch.randn(B, T, H, K),
        "v": torch.randn(B, T, H, V),
        "g": -torch.rand(B, T, H),
        "beta": torch.rand(B, T, H),
    }


# family function -> (how to call it, uses g, uses beta)
Call = Callable[[dict[str, torch.Tensor]], Any]
FAMILIES: dict[str, tuple[Call, bool, bool]] = {
    "chunk_linear_attn": (lambda x: chunk_linear_attn(x["q"], x["k"], x["v"], normalize=False), False, False),
    "fused_recurrent_linear_attn": (
        lambda x: fused_recurrent_linear_attn(x["q"], x["k"], x["v"]),
        False,
        False,
    ),
    "chunk_simple_gla": (lambda x: chunk_simple_gla(x["q"], x["k"], x["v"], x["g"]), True, False),
    "fused_recurrent_simple_gla": (
        lambda x: fused_recurrent_simple_gla(x["q"], x["k"], x["v"], x["g"]),
        True,
        False,
    ),
    "chunk_delta_rule": (lambda x: chunk_delta_rule(x["q"], x["k"], x["v"], x["beta"]), False, True),
    "fused_recurrent_delta_rule": (
        lambda x: fused_recurrent_delta_rule(x["q"], x["k"], x["v"], x["beta"]),
        False,
        True,
    ),
    "chunk_gated_delta_rule": (
        lambda x: chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"]),
        True,
        True,
    ),
    "fused_recurrent_gated_delta_rule": (
        lambda x: fused_recurrent_gated_delta_rule(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"]),
        True,
        True,
    ),
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "torch"),
        ("auto", "torch"),
        (" AUTO ", "torch"),
        ("torch", "torch"),
        ("triton", "triton"),
        ("", "torch"),
    ],
)
def test_backend_for_cpu_tensors(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str) -> None:
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, value)
    assert backend(torch.zeros(1)) == expected


def test_auto_picks_triton_for_cuda_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_like = types.SimpleNamespace(is_cuda=True)  # no GPU here: only the attribute matters
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert backend(cuda_like) == "triton"  # type: ignore[arg-type]
    monkeypatch.setenv(ENV_VAR, "torch")
    assert backend(cuda_like) == "torch"  # type: ignore[arg-type]


def test_unknown_backend_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=rf"{ENV_VAR}='cuda' is not one of auto, torch, triton"):
        backend(torch.zeros(1))
    with pytest.raises(ValueError, match=ENV_VAR):
        chunk_delta_rule(*[tensors()[n] for n in ("q", "k", "v", "beta")])


class Recorder:
    """Stands in for a core: records its arguments and returns zeros of the right shapes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.calls.append(args)
        q, _, v, _, _, _, _, output_final_state = args
        state = torch.zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[3])
        return torch.zeros_like(v), (state if output_final_state else None)


@pytest.mark.parametrize("family", FAMILIES)
def test_triton_backend_routes_to_the_triton_cores(monkeypatch: pytest.MonkeyPatch, family: str) -> None:
    """Fake triton modules: checks the routing and the core signature without running Triton."""
    chunk, recurrent = Recorder(), Recorder()
    monkeypatch.setitem(
        sys.modules, "asiarch.kernels.common.triton_chunk", types.SimpleNamespace(chunk_triton=chunk)
    )
    monkeypatch.setitem(
        sys.modules,
        "asiarch.kernels.common.triton_recurrent",
        types.SimpleNamespace(fused_recurrent_triton=recurrent),
    )
    monkeypatch.setenv(ENV_VAR, "triton")
    call, uses_g, uses_beta = FAMILIES[family]
    x = tensors()
    call(x)
    expected, other = (chunk, recurrent) if family.startswith("chunk") else (recurrent, chunk)
    assert other.calls == []
    assert len(expected.calls) == 1
    q, k, v, g, beta, scale, h0, output_final_state = expected.calls[0]
    assert q is x["q"] and k is x["k"] and v is x["v"]
    assert (g is not None) == uses_g
    assert (beta is not None) == uses_beta
    assert scale == K**-0.5
    assert h0 is None
    assert output_final_state is False


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_backend_routes_to_chunk_torch(monkeypatch: pytest.MonkeyPatch, family: str) -> None:
    recorder = Recorder()
    monkeypatch.setattr(dispatch, "chunk_torch", recorder)
    monkeypatch.setenv(ENV_VAR, "torch")
    FAMILIES[family][0](tensors())
    assert len(recorder.calls) == 1


def test_cu_seqlens_runs_all_sequences_in_one_padded_call(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(dispatch, "chunk_torch", recorder)
    x = tensors()
    chunk_gated_delta_rule(**x, cu_seqlens=torch.tensor([0, 5, 12]), output_final_state=True)
    (q, *_rest, output_final_state), *_ = recorder.calls
    assert len(recorder.calls) == 1
    assert q.shape == (2, 7, H, K)  # two sequences, padded to the longest
    assert output_final_state is True


def _bad(**changes: Any) -> dict[str, Any]:
    x: dict[str, Any] = tensors()
    x["initial_state"] = None
    x["cu_seqlens"] = None
    x.update(changes)
    return x


BAD_INPUTS = {
    "q not 4-D": (_bad(q=torch.randn(T, H, K)), r"q must be a 4-D tensor \[B, T, H, K\], got \(12, 2, 8\)"),
    "q not a tensor": (_bad(q=[1.0]), r"q must be a 4-D tensor \[B, T, H, K\], got list"),
    "k shape": (
        _bad(k=torch.randn(B, T, H, K + 1)),
        r"k has shape \(1, 12, 2, 9\), expected \(1, 12, 2, 8\)",
    ),
    "v shape": (_bad(v=torch.randn(B, T + 1, H, V)), r"v has shape \(1, 13, 2, 4\), expected \[B, T, H, V\]"),
    "integer q": (_bad(q=torch.ones(B, T, H, K, dtype=torch.long)), "q must be a floating-point tensor"),
    "g shape": (_bad(g=torch.randn(B, T)), r"g has shape \(1, 12\), expected \(1, 12, 2\)"),
    "beta shape": (
        _bad(beta=torch.randn(B, T, H + 1)),
        r"beta has shape \(1, 12, 3\), expected \(1, 12, 2\)",
    ),
    "initial_state shape": (
        _bad(initial_state=torch.zeros(B, H, V, K)),
        r"initial_state \[N, H, K, V\] has shape \(1, 2, 4, 8\), expected \(1, 2, 8, 4\)",
    ),
    "cu_seqlens with B > 1": (
        _bad(**{n: torch.cat([t, t]) for n, t in tensors().items()}, cu_seqlens=torch.tensor([0, 12])),
        "with cu_seqlens the batch size must be 1",
    ),
    "cu_seqlens end": (_bad(cu_seqlens=torch.tensor([0, 5, 11])), r"must start at 0 and end at T = 12"),
    "cu_seqlens order": (_bad(cu_seqlens=torch.tensor([0, 7, 5, 12])), "must be non-decreasing"),
    "cu_seqlens dtype": (
        _bad(cu_seqlens=torch.tensor([0.0, 12.0])),
        "cu_seqlens must be a 1-D integer tensor",
    ),
    "initial_state per sequence": (
        _bad(cu_seqlens=torch.tensor([0, 5, 12]), initial_state=torch.zeros(1, H, K, V)),
        r"initial_state \[N, H, K, V\] has shape \(1, 2, 8, 4\), expected \(2, 2, 8, 4\)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_name_the_argument_and_shapes(case: str) -> None:
    inputs, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        check_inputs("f", **inputs)
    with pytest.raises(ValueError, match=r"^chunk_gated_delta_rule: "):
        chunk_gated_delta_rule(**inputs)


def test_good_inputs_pass() -> None:
    check_inputs("f", **_bad(initial_state=torch.zeros(B, H, K, V)))
    check_inputs("f", **_bad(initial_state=torch.zeros(B, H, V, K)), state_v_first=True)
    check_inputs("f", **_bad(cu_seqlens=torch.tensor([0, 0, 12]), initial_state=torch.zeros(2, H, K, V)))


def test_l2norm_matches_fla() -> None:
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    expected = x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)
    assert_close("l2norm", expected, l2norm(x), 1e-12)
    assert l2norm(x.bfloat16()).dtype == torch.bfloat16


def test_naive_dtypes_and_default_scale() -> None:
    x = tensors()
    o64, ht64 = naive_recurrent(**{n: t.double() for n, t in x.items()}, output_final_state=True)
    assert ht64 is not None
    assert o64.dtype == ht64.dtype == torch.float64
    low = {n: t.bfloat16() for n, t in x.items()}
    o16, ht32 = naive_recurrent(**low, output_final_state=True)
    assert ht32 is not None
    assert (o16.dtype, ht32.dtype) == (torch.bfloat16, torch.float32)
    o_scaled, none = naive_recurrent(**x, scale=K**-0.5)
    assert none is None
    assert_close("default scale", o_scaled, naive_recurrent(**x)[0], 1e-6)
