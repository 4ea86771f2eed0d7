"""Linear attention: chunk and fused_recurrent forms (fp32) against the fp64 per-token reference.

Fresh random inputs every run (no seed); the shapes are in the test ids and in every
assertion message. Tolerances are FLA's, as relative RMS errors (asiarch.kernels.testing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

from asiarch.kernels.linear_attn import (
    chunk_linear_attn,
    fused_recurrent_linear_attn,
    naive_recurrent_linear_attn,
)
from asiarch.kernels.testing import assert_close

FORMS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor | None]]] = {
    "chunk": chunk_linear_attn,
    "fused_recurrent": fused_recurrent_linear_attn,
}
TOL = {"o": 1e-3, "ht": 1e-3, "dq": 1e-3, "dk": 1e-3, "dv": 1e-3, "dh0": 1e-3}
SMALL = [(1, 63, 1, 64), (2, 500, 3, 60)]
Inputs = dict[str, torch.Tensor | None]


def make_inputs(B: int, T: int, H: int, D: int, h0: bool = True) -> Inputs:
    """FLA's test inputs: random q, k, v (no gate, no beta in this family)."""
    return {
        "q": torch.randn(B, T, H, D),
        "k": torch.randn(B, T, H, D),
        "v": torch.randn(B, T, H, D),
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
    kwargs.setdefault("normalize", False)  # chunk_linear_attn normalises by default, as FLA's does
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
    reference = run(naive_recurrent_linear_attn, inputs, torch.float64, cotangents)
    for form, fn in FORMS.items():
        compare(f"{form} {shape}", reference, run(fn, inputs, torch.float32, cotangents))


def test_large_head_dim_forward_and_one_backward() -> None:
    """Ours on the whole batch; the fp64 reference on the last (batch, head) only, which depends on
    nothing else: a full-size per-token reference would keep gigabytes alive for its backward."""
    B, T, H, D = shape = (2, 1000, 3, 128)
    inputs = make_inputs(*shape)
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    chunk = run(chunk_linear_attn, inputs, torch.float32, cotangents)
    forward = run(fused_recurrent_linear_attn, inputs, torch.float32, None)

    def last(name: str, x: torch.Tensor) -> torch.Tensor:
        return x[-1:, :, -1:] if name not in ("ht", "dh0", "initial_state") else x[-1:, -1:]

    sliced = {n: last(n, x) for n, x in inputs.items() if x is not None}
    reference = run(
        naive_recurrent_linear_attn,
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


def positive_features(B: int, T: int, H: int, D: int) -> Inputs:
    """elu + 1 feature maps keep <q_t, sum k_s> away from 0, so the normalised output is well conditioned."""
    return {
        "q": F.elu(torch.randn(B, T, H, D)) + 1,
        "k": F.elu(torch.randn(B, T, H, D)) + 1,
        "v": torch.randn(B, T, H, D),
    }


@pytest.mark.parametrize("form", FORMS)
def test_normalize_divides_by_the_running_key_sum(form: str) -> None:
    B, T, H, D = shape = (2, 130, 2, 32)
    x = positive_features(*shape)
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))

    def by_hand(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> tuple[torch.Tensor, ...]:
        o, ht = naive_recurrent_linear_attn(q, k, v, output_final_state=True)
        z = (q * D**-0.5 * k.cumsum(1)).sum(-1, keepdim=True)
        return o / (z + 1e-10), ht

    reference = run(by_hand, x, torch.float64, cotangents)
    got = run(FORMS[form], x, torch.float32, cotangents, normalize=True)
    compare(f"{form} normalize {shape}", reference, got)


def test_normalize_defaults_follow_fla() -> None:
    x = positive_features(1, 40, 2, 16)
    assert_close("chunk default", chunk_linear_attn(**x, normalize=True)[0], chunk_linear_attn(**x)[0], 0)
    plain = fused_recurrent_linear_attn(**x, normalize=False)[0]
    assert_close("fused_recurrent default", plain, fused_recurrent_linear_attn(**x)[0], 0)


def test_normalize_with_cu_seqlens_restarts_the_key_sum() -> None:
    x = positive_features(1, 90, 2, 16)
    o, _ = chunk_linear_attn(**x, cu_seqlens=torch.tensor([0, 30, 90]))
    first = chunk_linear_attn(**{n: t[:, :30] for n, t in x.items()})[0]
    second = chunk_linear_attn(**{n: t[:, 30:] for n, t in x.items()})[0]
    assert_close("normalize per sequence", torch.cat([first, second], 1), o, 1e-5)


def test_bad_arguments_raise_value_error() -> None:
    x = make_inputs(1, 8, 2, 16)
    q, k, v = x["q"], x["k"], x["v"]
    with pytest.raises(ValueError, match="head_first"):
        chunk_linear_attn(q, k, v, head_first=True)
    with pytest.raises(ValueError, match=r"chunk_linear_attn: v has shape \(1, 8, 3, 16\), expected"):
        chunk_linear_attn(q, k, torch.randn(1, 8, 3, 16))
    with pytest.raises(ValueError, match="q must be a 4-D tensor"):
        fused_recurrent_linear_attn(q[0], k[0], v[0])
