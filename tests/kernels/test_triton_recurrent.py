"""fused_recurrent_triton against the float64 per-token reference, forward and backward.

The helpers (reference, inputs, tolerances, NaN-poisoned buffers) are those of
test_triton_chunk. The interpreter runs this kernel one token at a time, so the
sequences are shorter than in the chunk tests.
"""

from __future__ import annotations

import pytest
import torch
from test_triton_chunk import FAMILIES, check_family, make_inputs, poison, reference

from asiarch.kernels.common.triton_chunk import chunk_triton
from asiarch.kernels.common.triton_recurrent import fused_recurrent_triton
from asiarch.kernels.testing import assert_close


@pytest.fixture(autouse=True)
def poison_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    poison(monkeypatch)


# (B, T, H, K, V), gate strength, initial state, final state output. V = 40 > 32 gives two V-blocks
# in the backward (partial dq/dk/dbeta/dg summed over them) and three in the forward.
CASES = {
    "1x19x1x24-h0-ht": ((1, 19, 1, 24, 24), 1.0, True, True),
    "2x13x1x20x40-gate0.1-ht": ((2, 13, 1, 20, 40), 0.1, False, True),
    "1x21x1x16-gate10-h0": ((1, 21, 1, 16, 16), 10.0, True, False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_recurrent_forward_backward(family: str, case: str) -> None:
    shape, gate, with_h0, final_state = CASES[case]
    check_family(fused_recurrent_triton, family, shape, gate, with_h0, final_state)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_recurrent_forward_fp16(family: str) -> None:
    x = make_inputs(family, (1, 19, 2, 24, 20), dtype=torch.float16, seed=2)
    scale = 24**-0.5
    ref_o, ref_ht = reference(x["q"], x["k"], x["v"], x["g"], x["beta"], scale, x["h0"])
    o, ht = fused_recurrent_triton(
        x["q"], x["k"], x["v"], x["g"], x["beta"], scale, x["h0"], output_final_state=True
    )
    assert o.dtype == torch.float16
    assert ht.dtype == torch.float32
    assert_close("o", ref_o, o, 5e-3)
    assert_close("ht", ref_ht, ht, 5e-3)


def test_recurrent_decoding_matches_chunked_prefill() -> None:
    """Prefill with chunk_triton, then decode token by token carrying the state, as in generation."""
    x = make_inputs("gated_delta_rule", (1, 24, 2, 16, 24), seed=3)
    q, k, v, g, beta, h0 = (x[n] for n in ("q", "k", "v", "g", "beta", "h0"))
    with torch.no_grad():
        ref_o, ref_ht = reference(q, k, v, g, beta, 16**-0.5, h0)
        o, state = chunk_triton(q[:, :17], k[:, :17], v[:, :17], g[:, :17], beta[:, :17], None, h0, True, 16)
        outputs = [o]
        for t in range(17, 24):
            step = slice(t, t + 1)
            o, state = fused_recurrent_triton(
                q[:, step], k[:, step], v[:, step], g[:, step], beta[:, step], initial_state=state,
                output_final_state=True,
            )  # fmt: skip
            outputs.append(o)
    assert_close("o", ref_o, torch.cat(outputs, 1), 5e-3)
    assert_close("ht", ref_ht, state, 5e-3)


def test_recurrent_inference_under_no_grad() -> None:
    """Inputs that require grad but no autograd graph: nothing is kept for a backward."""
    x = make_inputs("delta_rule", (1, 9, 1, 16, 16), seed=4)
    q, k, v, beta = (x[n].requires_grad_() for n in ("q", "k", "v", "beta"))
    with torch.no_grad():
        o, ht = fused_recurrent_triton(q, k, v, beta=beta)
    assert ht is None
    assert not o.requires_grad
    assert_close("o", reference(q, k, v, None, beta, 16**-0.5, None)[0], o, 6e-3)
