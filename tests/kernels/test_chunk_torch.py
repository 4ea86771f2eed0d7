"""The chunked PyTorch core against the per-token reference, for every (g, beta) combination.

Fresh random inputs every run (no seed); shapes are in the test ids and assertion messages.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asiarch.kernels.common.chunk_torch import chunk_torch
from asiarch.kernels.common.naive import naive_recurrent
from asiarch.kernels.testing import assert_close

VARIANTS = {  # (uses g, uses beta)
    "linear_attn": (False, False),
    "simple_gla": (True, False),
    "delta_rule": (False, True),
    "gated_delta_rule": (True, True),
}
Inputs = dict[str, torch.Tensor | None]


pytestmark = pytest.mark.usefixtures("single_thread")


def make_inputs(
    variant: str,
    B: int,
    T: int,
    H: int,
    K: int,
    V: int,
    gate: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> Inputs:
    use_g, use_beta = VARIANTS[variant]
    return {
        "q": torch.randn(B, T, H, K, dtype=dtype),
        "k": F.normalize(torch.randn(B, T, H, K, dtype=dtype), p=2, dim=-1),
        "v": torch.randn(B, T, H, V, dtype=dtype),
        "g": F.logsigmoid(torch.randn(B, T, H, dtype=dtype)) * gate if use_g else None,
        "beta": torch.randn(B, T, H, dtype=dtype).sigmoid() if use_beta else None,
        "initial_state": torch.randn(B, H, K, V, dtype=dtype),
    }


def forward_backward(
    fn: object,
    inputs: Inputs,
    dtype: torch.dtype,
    cotangents: tuple[torch.Tensor, torch.Tensor],
    **kw: object,
) -> dict[str, torch.Tensor]:
    leaves = {n: x.detach().to(dtype).requires_grad_() for n, x in inputs.items() if x is not None}
    o, ht = fn(**leaves, output_final_state=True, **kw)  # type: ignore[operator]
    pairs = [(y, dy.to(y.dtype)) for y, dy in zip((o, ht), cotangents, strict=True) if y.requires_grad]
    torch.autograd.backward([y for y, _ in pairs], [dy for _, dy in pairs])
    result = {"o": o, "ht": ht}
    for name, x in leaves.items():
        result[f"d{name}"] = x.grad if x.grad is not None else torch.zeros_like(x)
    return result


def check(
    label: str, reference: dict[str, torch.Tensor], output: dict[str, torch.Tensor], ratio: float
) -> None:
    for name, ref in reference.items():
        assert torch.isfinite(output[name]).all(), f"{label} {name}: NaN/inf"
        assert_close(f"{label} {name}", ref, output[name], ratio)


def cotangents_for(B: int, T: int, H: int, K: int, V: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, T, H, V), torch.randn(B, H, K, V)


@pytest.mark.parametrize("chunk_size", [16, 48, 64])
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_fp64_reference(variant: str, chunk_size: int) -> None:
    shape = (2, 100, 2, 24, 40)  # K != V, T not a multiple of any chunk size
    inputs = make_inputs(variant, *shape)
    cot = cotangents_for(*shape)
    reference = forward_backward(naive_recurrent, inputs, torch.float64, cot)
    got = forward_backward(chunk_torch, inputs, torch.float32, cot, chunk_size=chunk_size)
    check(f"{variant} C={chunk_size} {shape}", reference, got, 1e-4)


@pytest.mark.parametrize("T", [1, 63, 64, 65, 128])
def test_sequence_lengths_around_the_chunk_size(T: int) -> None:
    shape = (1, T, 2, 16, 16)
    inputs = make_inputs("gated_delta_rule", *shape)
    cot = cotangents_for(*shape)
    reference = forward_backward(naive_recurrent, inputs, torch.float64, cot)
    check(f"T={T}", reference, forward_backward(chunk_torch, inputs, torch.float32, cot), 1e-4)


def test_empty_sequence_returns_the_initial_state() -> None:
    inputs = make_inputs("gated_delta_rule", 2, 0, 3, 8, 4)
    o, ht = chunk_torch(**inputs, output_final_state=True)
    assert o.shape == (2, 0, 3, 4)
    assert ht is not None
    assert torch.equal(ht, inputs["initial_state"])


@pytest.mark.parametrize("gate", [0.1, 10.0, 100.0])
@pytest.mark.parametrize("variant", ["simple_gla", "gated_delta_rule"])
def test_gate_strength(variant: str, gate: float) -> None:
    """Within-chunk decays of e^-1000 and beyond must underflow to 0, never overflow to inf/NaN."""
    shape = (1, 150, 2, 32, 32)
    inputs = make_inputs(variant, *shape, gate=gate)
    cot = cotangents_for(*shape)
    reference = forward_backward(naive_recurrent, inputs, torch.float64, cot)
    got = forward_backward(chunk_torch, inputs, torch.float32, cot)
    if gate > 10:
        # Every state is forgotten at once: the true dg (~1e-6) and dh0 (~1e-30) are below fp32
        # rounding of the cumulative gate (~1e-8, absolute), so a relative measure is meaningless there.
        for name in ("dg", "dinitial_state"):
            ref, out = reference.pop(name), got.pop(name)
            assert torch.isfinite(out).all(), f"{variant} gate={gate} {name}: NaN/inf"
            assert (ref - out).abs().max() < 1e-5, f"{variant} gate={gate} {name}"
    check(f"{variant} gate={gate}", reference, got, 1e-4)


def test_padding_changes_nothing() -> None:
    """Zero k, v, beta and g = 0 appended to a sequence leave its outputs and final state unchanged."""
    x = make_inputs("gated_delta_rule", 2, 50, 2, 16, 16)
    padded = {
        n: (F.pad(t, (0, 0) * (t.dim() - 2) + (0, 30)) if n != "initial_state" else t)
        for n, t in x.items()
        if t is not None
    }
    o, ht = chunk_torch(**x, output_final_state=True)
    o_pad, ht_pad = chunk_torch(**padded, output_final_state=True)
    assert ht is not None and ht_pad is not None
    assert_close("outputs", o, o_pad[:, :50], 1e-6)
    assert_close("final state", ht, ht_pad, 1e-6)


def test_fp64_inputs_compute_in_fp64() -> None:
    x = make_inputs("gated_delta_rule", 1, 70, 2, 16, 8, dtype=torch.float64)
    o, ht = chunk_torch(**x, output_final_state=True)
    o_ref, ht_ref = naive_recurrent(**x, output_final_state=True)
    assert ht is not None and ht_ref is not None
    assert o.dtype == ht.dtype == torch.float64
    assert_close("fp64 o", o_ref, o, 1e-12)
    assert_close("fp64 ht", ht_ref, ht, 1e-12)


def test_low_precision_inputs_give_fp32_state_and_input_dtype_output() -> None:
    x = make_inputs("gated_delta_rule", 1, 70, 2, 16, 8)
    low = {n: t.bfloat16() for n, t in x.items() if t is not None}
    o, ht = chunk_torch(**low, output_final_state=True)
    assert ht is not None
    assert o.dtype == torch.bfloat16
    assert ht.dtype == torch.float32
    o_ref, _ = naive_recurrent(**{n: t.double() for n, t in low.items()})
    assert_close("bf16 o", o_ref, o, 1e-2)


def test_explicit_scale() -> None:
    x = make_inputs("delta_rule", 1, 40, 1, 16, 16)
    o, _ = chunk_torch(**x, scale=0.3)
    o_ref, _ = naive_recurrent(**{n: t.double() for n, t in x.items() if t is not None}, scale=0.3)
    assert_close("scale=0.3", o_ref, o, 1e-5)


def test_backward_memory_grows_linearly_in_T() -> None:
    """Autograd keeps a small multiple of the inputs for the backward: nothing O(T^2), no per-token states."""

    def saved_bytes(T: int) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = make_inputs("gated_delta_rule", 1, T, 2, 64, 64)
        leaves = {n: t.requires_grad_() for n, t in x.items() if t is not None}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            chunk_torch(**leaves, output_final_state=True)
        return total

    small, large = saved_bytes(512), saved_bytes(2048)
    inputs_bytes = 3 * 2048 * 2 * 64 * 4
    assert large < 4.5 * small, f"saved {large} bytes at T=2048 vs {small} at T=512"
    assert large < 16 * inputs_bytes, f"saved {large} bytes for {inputs_bytes} bytes of q, k, v"


@pytest.mark.parametrize("T", [40, 200])
@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_path_matches_autograd_path(variant: str, T: int) -> None:
    """Without autograd recording, chunk_torch fills buffers in place; it must compute the same thing."""
    x = make_inputs(variant, 2, T, 2, 16, 24, gate=3.0)
    tracked = {n: t.clone().requires_grad_() for n, t in x.items() if t is not None}
    for final in (False, True):
        o, ht = chunk_torch(**x, output_final_state=final)
        o_tracked, ht_tracked = chunk_torch(**tracked, output_final_state=final)
        assert o_tracked.requires_grad and not o.requires_grad
        assert_close(f"{variant} T={T} o", o_tracked.detach(), o, 1e-6)
        assert (ht is None) == (ht_tracked is None) == (not final)
        if ht is not None and ht_tracked is not None:
            assert_close(f"{variant} T={T} ht", ht_tracked.detach(), ht, 1e-6)
