"""Simple GLA / retention: chunk and fused_recurrent forms (fp32) against the fp64 per-token reference.

Fresh random inputs every run (no seed); the shapes are in the test ids and in every
assertion message. Tolerances are FLA's, as relative RMS errors (asiarch.kernels.testing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

from asiarch.kernels.simple_gla import (
    chunk_simple_gla,
    fused_recurrent_simple_gla,
    naive_recurrent_simple_gla,
)
from asiarch.kernels.testing import assert_close

FORMS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor | None]]] = {
    "chunk": chunk_simple_gla,
    "fused_recurrent": fused_recurrent_simple_gla,
}
TOL = {"o": 5e-3, "ht": 5e-3, "dq": 5e-3, "dk": 5e-3, "dv": 5e-3, "dg": 5e-3, "dh0": 5e-3}
SMALL = [(1, 63, 1, 64), (2, 500, 3, 60)]
Inputs = dict[str, torch.Tensor | None]


def make_inputs(B: int, T: int, H: int, D: int, gate: float = 1.0, h0: bool = True) -> Inputs:
    """FLA's test inputs: random q, k, v; g = logsigmoid times the gate strength."""
    return {
        "q": torch.randn(B, T, H, D),
        "k": torch.randn(B, T, H, D),
        "v": torch.randn(B, T, H, D),
        "g": F.logsigmoid(torch.randn(B, T, H)) * gate,
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


# Every shape with and without an initial state; the gate strengths (g times 0.1 / 10) on both shapes.
CASES = [
    (shape, h0, gate)
    for shape in SMALL
    for h0, gate in ((False, 1.0), (True, 1.0), (True, 0.1), (False, 10.0))
]


@pytest.mark.parametrize(
    ("shape", "h0", "gate"),
    CASES,
    ids=["B{}-T{}-H{}-D{}".format(*s) + ("-h0" if h else "") + f"-gate{g}" for s, h, g in CASES],
)
def test_forward_backward_against_fp64_reference(
    shape: tuple[int, int, int, int], h0: bool, gate: float
) -> None:
    inputs = make_inputs(*shape, gate=gate, h0=h0)
    B, T, H, D = shape
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    reference = run(naive_recurrent_simple_gla, inputs, torch.float64, cotangents)
    for form, fn in FORMS.items():
        compare(f"{form} {shape} gate={gate}", reference, run(fn, inputs, torch.float32, cotangents))


def test_large_head_dim_forward_and_one_backward() -> None:
    """Ours on the whole batch; the fp64 reference on the last (batch, head) only, which depends on
    nothing else: a full-size per-token reference would keep gigabytes alive for its backward."""
    B, T, H, D = shape = (2, 1000, 3, 128)
    inputs = make_inputs(*shape)
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    chunk = run(chunk_simple_gla, inputs, torch.float32, cotangents)
    forward = run(fused_recurrent_simple_gla, inputs, torch.float32, None)

    def last(name: str, x: torch.Tensor) -> torch.Tensor:
        return x[-1:, :, -1:] if name not in ("ht", "dh0", "initial_state") else x[-1:, -1:]

    sliced = {n: last(n, x) for n, x in inputs.items() if x is not None}
    reference = run(
        naive_recurrent_simple_gla,
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
def test_g_gamma_is_a_constant_per_head_gate(form: str) -> None:
    x = make_inputs(2, 90, 3, 16)
    gamma = -torch.rand(3) * 0.5
    full = x | {"g": gamma.expand(2, 90, 3).contiguous()}
    cotangents = (torch.randn(2, 90, 3, 16), torch.randn(2, 3, 16, 16))
    expected = run(FORMS[form], full, torch.float32, cotangents)
    got = run(FORMS[form], x | {"g": None, "g_gamma": gamma}, torch.float32, cotangents)
    for name in ("o", "ht", "dq", "dk", "dv", "dh0"):
        assert_close(f"{form} g_gamma {name}", expected[name], got[name], 1e-5)
    assert_close(f"{form} dg_gamma", expected["dg"].sum((0, 1)), got["dg_gamma"], 1e-5)


def test_reverse_runs_the_recurrence_backwards_in_time() -> None:
    x = make_inputs(2, 75, 2, 16)
    cotangents = (torch.randn(2, 75, 2, 16), torch.randn(2, 2, 16, 16))
    flipped = {n: (t.flip(1) if n != "initial_state" else t) for n, t in x.items() if t is not None}
    reference = run(
        naive_recurrent_simple_gla, flipped, torch.float64, (cotangents[0].flip(1), cotangents[1])
    )
    got = run(fused_recurrent_simple_gla, x, torch.float32, cotangents, reverse=True)
    for name in ("o", "dq", "dk", "dv", "dg"):
        assert_close(f"reverse {name}", reference[name].flip(1), got[name], TOL[name])
    for name in ("ht", "dh0"):
        assert_close(f"reverse {name}", reference[name], got[name], TOL[name])
    # the same two sequences packed into one row: each must be reversed on its own
    flat = {n: (t.reshape(1, 150, *t.shape[2:]) if n != "initial_state" else t) for n, t in x.items()}
    o, ht = fused_recurrent_simple_gla(
        **flat, output_final_state=True, reverse=True, cu_seqlens=torch.tensor([0, 75, 150])
    )
    assert_close("reverse with cu_seqlens o", got["o"].reshape(1, 150, 2, 16), o, 1e-5)
    assert_close("reverse with cu_seqlens ht", got["ht"], ht, 1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_state_v_first_transposes_the_state(form: str) -> None:
    x = make_inputs(1, 50, 2, 16)
    v = torch.randn(1, 50, 2, 24)  # V != K so a wrong transpose cannot pass
    h0 = torch.randn(1, 2, 16, 24)
    o, ht = FORMS[form](x["q"], x["k"], v, x["g"], initial_state=h0, output_final_state=True)
    o_t, ht_t = FORMS[form](
        x["q"], x["k"], v, x["g"], initial_state=h0.mT, output_final_state=True, state_v_first=True
    )
    assert ht is not None and ht_t is not None
    assert_close(f"{form} state_v_first o", o, o_t, 1e-6)
    assert_close(f"{form} state_v_first ht", ht.mT, ht_t, 1e-6)


def test_bad_arguments_raise_value_error() -> None:
    x = make_inputs(1, 8, 2, 16)
    q, k, v, g = x["q"], x["k"], x["v"], x["g"]
    with pytest.raises(ValueError, match=r"either g .* or g_gamma"):
        chunk_simple_gla(q, k, v, g, g_gamma=torch.zeros(2))
    with pytest.raises(ValueError, match=r"g_gamma has shape \(3,\), expected \[H\] = \(2,\)"):
        fused_recurrent_simple_gla(q, k, v, g_gamma=torch.zeros(3))
    with pytest.raises(ValueError, match="head_first"):
        chunk_simple_gla(q, k, v, g, head_first=True)
    with pytest.raises(ValueError, match=r"initial_state \[N, H, K, V\] has shape \(1, 2, 16, 8\)"):
        chunk_simple_gla(q, k, v, g, initial_state=torch.zeros(1, 2, 16, 8))
