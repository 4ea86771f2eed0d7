"""FLA-compatible building blocks: norms, short convolution, padding helpers, Cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import asiarch.kernels as kernels
from asiarch.kernels.modules import FusedRMSNormGated, L2Norm, RMSNorm, ShortConvolution, l2_norm, l2norm
from asiarch.kernels.utils import (
    Cache,
    get_layer_cache,
    get_unpad_data,
    index_first_axis,
    pad_input,
    unpad_input,
    update_layer_cache,
)


def rms_ref(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    x = x.double()
    y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * weight.double() if weight is not None else y


def close(out: torch.Tensor, ref: torch.Tensor) -> None:
    """out (fp32) equals an fp64 reference to fp32 precision."""
    torch.testing.assert_close(out, ref.to(out.dtype), rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- RMSNorm ---------------------------------------------------------------------------------------


def test_rmsnorm_matches_formula_and_fla_parameters() -> None:
    norm = RMSNorm(8, eps=1e-5)
    assert norm.weight.shape == (8,) and norm.bias is None
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(2, 5, 8)
    close(norm(x), rms_ref(x, norm.weight, 1e-5))
    assert RMSNorm(8, elementwise_affine=False).weight is None
    assert RMSNorm(8, bias=True).bias.shape == (8,)
    assert RMSNorm(8, dtype=torch.float64).weight.dtype == torch.float64


def test_rmsnorm_residual_and_prenorm_conventions() -> None:
    norm = RMSNorm(8)
    x, res = torch.randn(3, 8), torch.randn(3, 8)
    y = norm(x, residual=res)
    close(y, rms_ref(x + res, None, norm.eps))
    y2, res_out = norm(x, residual=res, prenorm=True)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(res_out, x + res)
    # No residual: prenorm hands x back unchanged, or upcast to fp32 on request.
    _, res_out = norm(x, prenorm=True)
    assert res_out is x
    xb = x.bfloat16()
    yb, res_fp32 = norm(xb, prenorm=True, residual_in_fp32=True)
    assert yb.dtype == torch.bfloat16 and res_fp32.dtype == torch.float32
    torch.testing.assert_close(res_fp32, xb.float())
    # The residual sum keeps the residual's dtype.
    _, res_out = norm(xb, residual=res.float(), prenorm=True)
    assert res_out.dtype == torch.float32


def test_rmsnorm_gradients_reach_input_weight_and_residual() -> None:
    norm = RMSNorm(6, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    res = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: norm(a, residual=b, prenorm=True), (x, res))
    norm(x).sum().backward()
    assert norm.weight.grad is not None


# --- FusedRMSNormGated -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "gate"), [("swish", F.silu), ("silu", F.silu), ("sigmoid", torch.sigmoid)]
)
def test_fused_rmsnorm_gated_is_norm_times_activated_gate(activation: str, gate) -> None:
    norm = FusedRMSNormGated(8, activation=activation)
    torch.nn.init.normal_(norm.weight)
    x, g, res = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    expected = rms_ref(x, norm.weight, norm.eps) * gate(g.double())
    close(norm(x, g), expected)
    y, res_out = norm(x, g, residual=res, prenorm=True)
    close(y, rms_ref(x + res, norm.weight, norm.eps) * gate(g.double()))
    torch.testing.assert_close(res_out, x + res)


def test_fused_rmsnorm_gated_parameters_and_errors() -> None:
    norm = FusedRMSNormGated(8)
    assert norm.bias is None and norm.activation == "swish" and norm.eps == 1e-5
    assert FusedRMSNormGated(8, elementwise_affine=False).weight is None
    with pytest.raises(ValueError, match="Unsupported activation"):
        FusedRMSNormGated(8, activation="gelu")
    x = torch.randn(2, 8, requires_grad=True)
    g = torch.randn(2, 8, requires_grad=True)
    norm(x, g).sum().backward()
    assert x.grad is not None and g.grad is not None and norm.weight.grad is not None


# --- l2norm ----------------------------------------------------------------------------------------


def test_l2norm_normalises_last_dim_and_is_differentiable() -> None:
    x = torch.randn(2, 5, 3, 16)
    y = l2norm(x)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(2, 5, 3), rtol=1e-4, atol=1e-4)
    assert l2_norm is l2norm and kernels.l2norm is l2norm
    assert l2norm(x.bfloat16()).dtype == torch.bfloat16
    assert l2norm(x.bfloat16(), output_dtype=torch.float32).dtype == torch.float32
    torch.testing.assert_close(L2Norm()(x), y)
    xd = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: l2norm(t, eps=1e-6), (xd,))


# --- ShortConvolution ------------------------------------------------------------------------------


def conv_ref(conv: ShortConvolution, x: torch.Tensor) -> torch.Tensor:
    """y_t = silu(sum_i w[:, i] * x_{t-W+1+i} + b), zeros before the start."""
    W = conv.kernel_size[0]
    w = conv.weight.squeeze(1)
    padded = F.pad(x, (0, 0, W - 1, 0))
    y = sum(padded[:, i : i + x.shape[1]] * w[:, i] for i in range(W))
    if conv.bias is not None:
        y = y + conv.bias
    return F.silu(y) if conv.activation else y


def make_conv(D: int = 6, W: int = 4, bias: bool = True, activation: str | None = "silu") -> ShortConvolution:
    conv = ShortConvolution(D, W, bias=bias, activation=activation)
    with torch.no_grad():
        conv.weight.normal_()
        if bias:
            conv.bias.normal_()
    return conv


@pytest.mark.parametrize("activation", ["silu", None])
def test_short_conv_matches_reference_and_fla_layout(activation: str | None) -> None:
    conv = make_conv(activation=activation)
    assert conv.weight.shape == (6, 1, 4) and conv.backend == "triton" and conv.state_size == 24
    x = torch.randn(2, 9, 6)
    y, cache = conv(x)
    assert cache is None and y.shape == x.shape
    torch.testing.assert_close(y, conv_ref(conv, x))
    res = torch.randn_like(x)
    torch.testing.assert_close(conv(x, residual=res)[0], conv_ref(conv, x) + res)
    # [B, T, H, d] inputs are convolved over H * d channels and keep their shape.
    torch.testing.assert_close(conv(x.view(2, 9, 2, 3))[0], y.view(2, 9, 2, 3))


def test_short_conv_is_causal() -> None:
    conv = make_conv()
    x = torch.randn(1, 10, 6)
    y = conv(x)[0]
    for t in (0, 4, 9):
        x2 = x.clone()
        x2[:, t] += 1.0
        y2 = conv(x2)[0]
        torch.testing.assert_close(y2[:, :t], y[:, :t], rtol=0, atol=0)
        assert not torch.allclose(y2[:, t], y[:, t])


def test_short_conv_stepwise_decoding_equals_full_sequence() -> None:
    conv = make_conv()
    x = torch.randn(2, 11, 6)
    full = conv(x)[0]
    with torch.no_grad():
        out, cache = conv(x[:, :2], output_final_state=True)  # prefill shorter than the kernel
        assert cache.shape == (2, 6, 4)
        outs = [out]
        for t in range(2, 11):
            y, new_cache = conv(x[:, t : t + 1], cache=cache, output_final_state=True)
            assert new_cache is cache  # the decoding step updates the cache in place, as FLA's does
            outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), full)
    # Chunked prefill with autograd on (no in-place step) gives the same outputs and state.
    y1, c1 = conv(x[:, :3], output_final_state=True)
    y2, c2 = conv(x[:, 3:], cache=c1, output_final_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), full)
    torch.testing.assert_close(c2, x[:, -4:].transpose(1, 2))
    torch.testing.assert_close(cache, c2)


def test_short_conv_varlen_mask_and_gradients() -> None:
    conv = make_conv()
    a, b = torch.randn(1, 5, 6), torch.randn(1, 3, 6)
    cu_seqlens = torch.tensor([0, 5, 8], dtype=torch.int32)
    y, state = conv(torch.cat([a, b], 1), cu_seqlens=cu_seqlens, output_final_state=True)
    ya, sa = conv(a, output_final_state=True)
    yb, sb = conv(b, output_final_state=True)
    torch.testing.assert_close(y, torch.cat([ya, yb], 1))
    torch.testing.assert_close(state, torch.cat([sa, sb], 0))

    x = torch.randn(2, 5, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    x_before = x.clone()
    torch.testing.assert_close(conv(x, mask=mask)[0], conv(x * mask[..., None])[0])
    torch.testing.assert_close(x, x_before)  # unlike FLA, the caller's x is not modified

    x.requires_grad_(True)
    cache = torch.randn(2, 6, 4, requires_grad=True)
    conv(x, cache=cache)[0].sum().backward()
    assert x.grad is not None and conv.weight.grad is not None and conv.bias.grad is not None
    assert cache.grad[..., 1:].abs().sum() > 0 and cache.grad[..., 0].abs().sum() == 0


# --- padding helpers -------------------------------------------------------------------------------


def test_get_unpad_data_follows_fla_conventions() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 0]])
    indices, cu_seqlens, max_len = get_unpad_data(mask)
    assert indices.tolist() == [0, 1, 2, 5, 6] and indices.dtype == torch.int64
    assert cu_seqlens.tolist() == [0, 3, 5] and cu_seqlens.dtype == torch.int32
    assert max_len == 3 and isinstance(max_len, int)
    assert get_unpad_data(mask.bool())[1].tolist() == [0, 3, 5]


def test_unpad_pad_roundtrip_and_gradient() -> None:
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]])
    x = torch.randn(3, 4, 2, 5, requires_grad=True)
    indices, _, _ = get_unpad_data(mask)
    packed = index_first_axis(x.reshape(12, 2, 5), indices)
    assert packed.shape == (7, 2, 5)
    restored = pad_input(packed, indices, 3, 4)
    torch.testing.assert_close(restored, x * mask[..., None, None])
    restored.sum().backward()
    torch.testing.assert_close(x.grad, mask[..., None, None].expand_as(x).float())

    q, (k,), indices_q, (cu_q, cu_k), (max_q, max_k) = unpad_input(x, (x,), mask, q_len=4, keepdim=True)
    assert q.shape == k.shape == (1, 7, 2, 5) and indices_q.tolist() == indices.tolist()
    assert cu_q is cu_k and max_q == max_k == 4
    q1, _, indices_1, (cu_1, _), (max_1, _) = unpad_input(x[:, -1:], (x,), mask, q_len=1)
    assert q1.shape == (3, 2, 5) and indices_1.tolist() == [0, 1, 2]
    assert cu_1.tolist() == [0, 1, 2, 3] and max_1 == 1


# --- Cache -----------------------------------------------------------------------------------------


def test_cache_update_and_lookup() -> None:
    cache = Cache()
    assert len(cache) == 0 and cache.get_seq_length() == 0
    state0 = torch.zeros(1, 2, 4, 4)
    conv = (torch.zeros(1, 8, 4),) * 3
    stored = cache.update(recurrent_state=state0, conv_state=conv, layer_idx=0, offset=5)
    assert stored is cache[0] and cache[0]["recurrent_state"] is state0 and cache[0]["conv_state"] is conv
    assert set(stored) == {"recurrent_state", "attn_state", "conv_state", "ffn_state"}
    state1 = torch.ones(1, 2, 4, 4)
    cache.update(recurrent_state=state1, layer_idx=0, offset=1)
    assert cache[0]["recurrent_state"] is state1 and cache[0]["conv_state"] is conv  # None keeps the old
    assert cache.get_seq_length(0) == 6 and cache.get_seq_length(1) == 0
    with pytest.raises(KeyError):
        cache[1]
    cache.update(recurrent_state=state0, layer_idx=2, offset=6)
    assert len(cache) == 3 and cache[1]["recurrent_state"] is None and cache.get_seq_length(2) == 6
    assert [s["recurrent_state"] for s in cache][2] is state0
    assert cache.get_max_cache_shape() == -1


def test_cache_attention_state_window_and_legacy_roundtrip() -> None:
    cache = Cache()
    k, v = torch.randn(1, 3, 2), torch.randn(1, 3, 2)
    cache.update(attn_state=(k, v), layer_idx=0)
    k2, v2 = torch.randn(1, 2, 2), torch.randn(1, 2, 2)
    cache.update(attn_state=(k2, v2), layer_idx=0)
    torch.testing.assert_close(cache[0]["attn_state"][0], torch.cat([k, k2], 1))
    assert cache.get_seq_length(0) == 5  # counted from the attention length, not offset

    windowed = Cache()
    windowed.update(attn_state=(k, v), layer_idx=0, cache_kwargs={"window_size": 2})
    windowed.update(attn_state=(k2[:, :1], v2[:, :1]), layer_idx=0, cache_kwargs={"window_size": 2})
    torch.testing.assert_close(windowed[0]["attn_state"][0], torch.cat([k[:, -1:], k2[:, :1]], 1))

    legacy = cache.to_legacy_cache()
    rebuilt = Cache.from_legacy_cache(legacy, seen_tokens=5)
    assert len(rebuilt) == 1 and rebuilt[0]["attn_state"][0] is cache[0]["attn_state"][0]
    assert rebuilt.get_seq_length(0) == 5


def test_layer_cache_helpers() -> None:
    class Layer(torch.nn.Module):
        def __init__(self, layer_idx: int | None) -> None:
            super().__init__()
            self.layer_idx = layer_idx

    cache = Cache()
    assert get_layer_cache(Layer(0), cache) is None and get_layer_cache(Layer(None), None) is None
    update_layer_cache(Layer(0), cache, recurrent_state=torch.ones(1), offset=3)
    assert get_layer_cache(Layer(0), cache)["recurrent_state"] is not None and cache.get_seq_length() == 3
    with pytest.raises(ValueError, match="layer_idx"):
        get_layer_cache(Layer(None), cache)


def test_package_exports_resolve() -> None:
    assert kernels.RMSNorm is RMSNorm
    assert kernels.FusedRMSNormGated is FusedRMSNormGated
    assert kernels.ShortConvolution is ShortConvolution
    assert callable(kernels.l2norm)
