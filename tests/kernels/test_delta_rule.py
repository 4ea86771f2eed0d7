"""Delta rule: chunk and fused_recurrent forms (fp32) against the fp64 per-token reference.

Fresh random inputs every run (no seed); the shapes are in the test ids and in every
assertion message. Tolerances are FLA's, as relative RMS errors (asiarch.kernels.testing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

from asiarch.kernels.delta_rule import (
    chunk_delta_rule,
    fused_recurrent_delta_rule,
    naive_recurrent_delta_rule,
)
from asiarch.kernels.testing import assert_close

FORMS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor | None]]] = {
    "chunk": chunk_delta_rule,
    "fused_recurrent": fused_recurrent_delta_rule,
}
TOL = {"o": 6e-3, "ht": 6e-3, "dq": 8e-3, "dk": 8e-3, "dv": 8e-3, "dbeta": 8e-3, "dh0": 8e-3}
SMALL = [(1, 63, 1, 64), (2, 500, 3, 60)]
Inputs = dict[str, torch.Tensor | None]


def make_inputs(B: int, T: int, H: int, D: int, h0: bool = True) -> Inputs:
    """FLA's test inputs: L2-normalised keys, beta = sigmoid (no gate in this family)."""
    return {
        "q": torch.randn(B, T, H, D),
        "k": F.normalize(torch.randn(B, T, H, D), p=2, dim=-1),
        "v": torch.randn(B, T, H, D),
        "beta": torch.randn(B, T, H).sigmoid(),
        "initial_state": torch.randn(B, H, D, D) if h0 else None,
    }


def run(
    fn: Callable[..., tuple[torch.Tensor, torch.Tensor | None]],
    inputs: Inputs,
    dtype: torch.dtype,
    cotangents: tuple[torch.Tensor, torch.Tensor] | None,
    **kwargs: object,
) -> dict[str, torch.Tensor]:
    """Outputs, final state and (with cotangents) the gradient of every input, computed in dtype."""
    leaves = {n: x.detach().to(dtype).requires_grad_() for n, x in inputs.items() if x is not None}
    o, ht = fn(**leaves, output_final_state=True, **kwargs)
    assert ht is not None
    result = {"o": o, "ht": ht}
    if cotangents is not None:
        pairs = [(y, dy.to(y.dtype)) for y, dy in zip((o, ht), cotangents, strict=True) if y.requires_grad]
        torch.autograd.backward([y for y, _ in pairs], [dy for _, dy in pairs])
        for name, x in leaves.items():
            grad = x.grad if x.grad is not None else torch.zeros_like(x)  # e.g. an empty sequence
            result["dh0" if name == "initial_state" else f"d{name}"] = grad
    return result


def compare(label: str, reference: dict[str, torch.Tensor], output: dict[str, torch.Tensor]) -> None:
    for name, ref in reference.items():
        if name in output:
            assert torch.isfinite(output[name]).all(), f"{label} {name}: NaN/inf in the output"
            assert_close(f"{label} {name}", ref, output[name], TOL[name])


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # These are many small ops: on 2 shared cores OpenMP's barriers cost more than a second thread gains.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("h0", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "B{}-T{}-H{}-D{}".format(*s))
def test_forward_backward_against_fp64_reference(shape: tuple[int, int, int, int], h0: bool) -> None:
    inputs = make_inputs(*shape, h0=h0)
    B, T, H, D = shape
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    reference = run(naive_recurrent_delta_rule, inputs, torch.float64, cotangents)
    for form, fn in FORMS.items():
        compare(f"{form} {shape}", reference, run(fn, inputs, torch.float32, cotangents))


def test_large_head_dim_forward_and_one_backward() -> None:
    """Ours on the whole batch; the fp64 reference on the last (batch, head) only, which depends on
    nothing else: a full-size per-token reference would keep gigabytes alive for its backward."""
    B, T, H, D = shape = (2, 1000, 3, 128)
    inputs = make_inputs(*shape)
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    chunk = run(chunk_delta_rule, inputs, torch.float32, cotangents)
    forward = run(fused_recurrent_delta_rule, inputs, torch.float32, None)

    def last(name: str, x: torch.Tensor) -> torch.Tensor:
        return x[-1:, :, -1:] if name not in ("ht", "dh0", "initial_state") else x[-1:, -1:]

    sliced = {n: last(n, x) for n, x in inputs.items() if x is not None}
    reference = run(
        naive_recurrent_delta_rule,
        sliced,
        torch.float64,
        (last("o", cotangents[0]), last("ht", cotangents[1])),
    )
    compare(f"chunk {shape}", reference, {n: last(n, x) for n, x in chunk.items()})
    compare(f"fused_recurrent {shape}", reference, {n: last(n, x) for n, x in forward.items()})


@pytest.mark.parametrize("form", FORMS)
def test_final_state_is_none_unless_requested(form: str) -> None:
    inputs = make_inputs(1, 20, 2, 16)
    o, ht = FORMS[form](**inputs)
    assert ht is None
    assert o.shape == (1, 20, 2, 16)
    assert o.dtype == torch.float32


@pytest.mark.parametrize("lengths", [[37, 0, 100, 64, 1], [3, 4, 300]], ids=["padded_batch", "one_by_one"])
@pytest.mark.parametrize("form", FORMS)
def test_cu_seqlens_matches_separate_calls(form: str, lengths: list[int]) -> None:
    fn, H, D = FORMS[form], 2, 32
    bounds = torch.tensor([0, *lengths]).cumsum(0)
    inputs = make_inputs(1, sum(lengths), H, D, h0=False)
    inputs["initial_state"] = torch.randn(len(lengths), H, D, D)
    cotangents = (torch.randn(1, sum(lengths), H, D), torch.randn(len(lengths), H, D, D))
    packed = run(fn, inputs, torch.float32, cotangents, cu_seqlens=bounds)
    pieces: dict[str, list[torch.Tensor]] = {}
    for i, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        segment = {n: x[:, a:b] for n, x in inputs.items() if n != "initial_state" and x is not None}
        segment["initial_state"] = inputs["initial_state"][i : i + 1]
        part = run(fn, segment, torch.float32, (cotangents[0][:, a:b], cotangents[1][i : i + 1]))
        for name, x in part.items():
            pieces.setdefault(name, []).append(x)
    for name, parts in pieces.items():
        joined = torch.cat(parts, dim=0 if name in ("ht", "dh0") else 1)
        assert_close(f"{form} cu_seqlens {lengths} {name}", joined, packed[name], 1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_qk_l2norm_in_kernel_matches_normalising_by_hand(form: str) -> None:
    inputs = make_inputs(2, 70, 2, 32)
    inputs["k"] = torch.randn(2, 70, 2, 32) * 3  # raw keys: the kernel normalises them

    def by_hand(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        for name in ("q", "k"):
            kw[name] = kw[name] * torch.rsqrt(kw[name].pow(2).sum(-1, keepdim=True) + 1e-6)
        return FORMS[form](**kw)

    cotangents = (torch.randn(2, 70, 2, 32), torch.randn(2, 2, 32, 32))
    expected = run(by_hand, inputs, torch.float32, cotangents)
    got = run(FORMS[form], inputs, torch.float32, cotangents, use_qk_l2norm_in_kernel=True)
    for name in expected:
        assert_close(f"{form} l2norm {name}", expected[name], got[name], 1e-5)


def test_fused_recurrent_beta_defaults_to_ones() -> None:
    x = make_inputs(1, 40, 2, 16)
    o, _ = fused_recurrent_delta_rule(x["q"], x["k"], x["v"])
    o_ones, _ = chunk_delta_rule(x["q"], x["k"], x["v"], torch.ones(1, 40, 2))
    assert_close("beta=None is beta=1", o_ones, o, 1e-6)


def test_bad_arguments_raise_value_error() -> None:
    x = make_inputs(1, 8, 2, 16)
    q, k, v, beta = x["q"], x["k"], x["v"], x["beta"]
    with pytest.raises(ValueError, match="head_first"):
        chunk_delta_rule(q, k, v, beta, head_first=True)
    with pytest.raises(
        ValueError, match=r"chunk_delta_rule: beta has shape \(1, 8, 3\), expected \(1, 8, 2\)"
    ):
        chunk_delta_rule(q, k, v, torch.rand(1, 8, 3))
    with pytest.raises(ValueError, match=r"head-wise beta \(1, 8, 2, 16\) is not supported"):
        fused_recurrent_delta_rule(q, k, v, torch.rand(1, 8, 2, 16))
    with pytest.raises(ValueError, match=r"fused_recurrent_delta_rule: k has shape \(1, 8, 2, 8\), expected"):
        fused_recurrent_delta_rule(q, k[..., :8], v, beta)
