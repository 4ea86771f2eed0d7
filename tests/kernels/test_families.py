"""The four kernel families (linear attention, simple GLA, delta rule, gated delta rule): chunk and
fused_recurrent forms (fp32) against the fp64 per-token reference, plus each family's own options.

One table of family descriptors drives the shared cases; the family-specific tests follow, named
after their family. Fresh random inputs every run (no seed); the family and shapes are in the test
ids and in every assertion message. Tolerances are FLA's, as relative RMS errors
(asiarch.kernels.testing).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from asiarch.kernels.testing import assert_close

Fn = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
Inputs = dict[str, torch.Tensor | None]
Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Family:
    """One kernel family: asiarch.kernels.<name>.{chunk_,fused_recurrent_,naive_recurrent_}<name>."""

    name: str
    tol: dict[str, float]
    gated: bool = False  # takes a log-space gate g (also tested at gate strengths 0.1 and 10)
    delta: bool = False  # takes beta and L2-normalised keys; has use_qk_l2norm_in_kernel
    defaults: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of run()

    def fn(self, prefix: str) -> Fn:
        return getattr(importlib.import_module(f"asiarch.kernels.{self.name}"), f"{prefix}_{self.name}")

    @property
    def chunk(self) -> Fn:
        return self.fn("chunk")

    @property
    def fused_recurrent(self) -> Fn:
        return self.fn("fused_recurrent")

    @property
    def naive(self) -> Fn:
        return self.fn("naive_recurrent")

    @property
    def forms(self) -> dict[str, Fn]:
        return {"chunk": self.chunk, "fused_recurrent": self.fused_recurrent}

    def make_inputs(self, B: int, T: int, H: int, D: int, gate: float = 1.0, h0: bool = True) -> Inputs:
        """FLA's test inputs: random q, k, v; delta rules: L2-normalised keys and beta = sigmoid;
        gated: g = logsigmoid times the gate strength."""
        k = torch.randn(B, T, H, D)
        inputs: Inputs = {
            "q": torch.randn(B, T, H, D),
            "k": F.normalize(k, p=2, dim=-1) if self.delta else k,
            "v": torch.randn(B, T, H, D),
        }
        if self.gated:
            inputs["g"] = F.logsigmoid(torch.randn(B, T, H)) * gate
        if self.delta:
            inputs["beta"] = torch.randn(B, T, H).sigmoid()
        inputs["initial_state"] = torch.randn(B, H, D, D) if h0 else None
        return inputs

    def run(
        self,
        fn: Fn,
        inputs: Inputs,
        dtype: torch.dtype,
        cotangents: tuple[torch.Tensor, torch.Tensor] | None,
        **kwargs: object,
    ) -> dict[str, torch.Tensor]:
        """Outputs, final state and (with cotangents) the gradient of every input, computed in dtype."""
        leaves = {n: x.detach().to(dtype).requires_grad_() for n, x in inputs.items() if x is not None}
        o, ht = fn(**leaves, output_final_state=True, **(self.defaults | kwargs))
        assert ht is not None
        result = {"o": o, "ht": ht}
        if cotangents is not None:
            pairs = [
                (y, dy.to(y.dtype)) for y, dy in zip((o, ht), cotangents, strict=True) if y.requires_grad
            ]
            torch.autograd.backward([y for y, _ in pairs], [dy for _, dy in pairs])
            for name, x in leaves.items():
                grad = x.grad if x.grad is not None else torch.zeros_like(x)  # e.g. an empty sequence
                result["dh0" if name == "initial_state" else f"d{name}"] = grad
        return result

    def compare(
        self, label: str, reference: dict[str, torch.Tensor], output: dict[str, torch.Tensor]
    ) -> None:
        for name, ref in reference.items():
            if name in output:
                assert torch.isfinite(output[name]).all(), (
                    f"{self.name} {label} {name}: NaN/inf in the output"
                )
                assert_close(f"{self.name} {label} {name}", ref, output[name], self.tol[name])


LINEAR_ATTN = Family(
    "linear_attn",
    tol={"o": 1e-3, "ht": 1e-3, "dq": 1e-3, "dk": 1e-3, "dv": 1e-3, "dh0": 1e-3},
    defaults={"normalize": False},  # chunk_linear_attn normalises by default, as FLA's does
)
SIMPLE_GLA = Family(
    "simple_gla",
    tol={"o": 5e-3, "ht": 5e-3, "dq": 5e-3, "dk": 5e-3, "dv": 5e-3, "dg": 5e-3, "dh0": 5e-3},
    gated=True,
)
DELTA_RULE = Family(
    "delta_rule",
    tol={"o": 6e-3, "ht": 6e-3, "dq": 8e-3, "dk": 8e-3, "dv": 8e-3, "dbeta": 8e-3, "dh0": 8e-3},
    delta=True,
)
GATED_DELTA_RULE = Family(
    "gated_delta_rule",
    tol={"o": 5e-3, "ht": 5e-3, "dq": 8e-3, "dk": 8e-3, "dv": 8e-3, "dg": 2e-2, "dbeta": 2e-2, "dh0": 5e-3},
    gated=True,
    delta=True,
)
FAMILIES = [LINEAR_ATTN, SIMPLE_GLA, DELTA_RULE, GATED_DELTA_RULE]
DELTA_FAMILIES = [f for f in FAMILIES if f.delta]
SMALL: list[Shape] = [(1, 63, 1, 64), (2, 500, 3, 60)]

by_family = pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
by_form = pytest.mark.parametrize("form", ["chunk", "fused_recurrent"])


pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- shared by all families


def reference_cases() -> Iterator[Any]:
    """Every shape with and without an initial state; gated families: the gate strengths (g times
    0.1 / 10) on both shapes."""
    for family in FAMILIES:
        strengths = [(False, 1.0), (True, 1.0)] + ([(True, 0.1), (False, 10.0)] if family.gated else [])
        for shape in SMALL:
            for h0, gate in strengths:
                case = "B{}-T{}-H{}-D{}".format(*shape) + ("-h0" if h0 else "-no_h0")
                case += f"-gate{gate}" if family.gated else ""
                yield pytest.param(family, shape, h0, gate, id=f"{family.name}-{case}")


@pytest.mark.parametrize(("family", "shape", "h0", "gate"), list(reference_cases()))
def test_forward_backward_against_fp64_reference(family: Family, shape: Shape, h0: bool, gate: float) -> None:
    inputs = family.make_inputs(*shape, gate=gate, h0=h0)
    B, T, H, D = shape
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    reference = family.run(family.naive, inputs, torch.float64, cotangents)
    for form, fn in family.forms.items():
        output = family.run(fn, inputs, torch.float32, cotangents)
        family.compare(f"{form} {shape} h0={h0} gate={gate}", reference, output)


@by_family
def test_large_head_dim_forward_and_one_backward(family: Family) -> None:
    """Ours on the whole batch; the fp64 reference on the last (batch, head) only, which depends on
    nothing else: a full-size per-token reference would keep gigabytes alive for its backward."""
    B, T, H, D = shape = (2, 1000, 3, 128)
    inputs = family.make_inputs(*shape)
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))
    chunk = family.run(family.chunk, inputs, torch.float32, cotangents)
    forward = family.run(family.fused_recurrent, inputs, torch.float32, None)

    def last(name: str, x: torch.Tensor) -> torch.Tensor:
        return x[-1:, :, -1:] if name not in ("ht", "dh0", "initial_state") else x[-1:, -1:]

    sliced = {n: last(n, x) for n, x in inputs.items() if x is not None}
    last_cotangents = (last("o", cotangents[0]), last("ht", cotangents[1]))
    reference = family.run(family.naive, sliced, torch.float64, last_cotangents)
    family.compare(f"chunk {shape}", reference, {n: last(n, x) for n, x in chunk.items()})
    family.compare(f"fused_recurrent {shape}", reference, {n: last(n, x) for n, x in forward.items()})


@by_form
@by_family
def test_final_state_is_none_unless_requested(family: Family, form: str) -> None:
    inputs = family.make_inputs(1, 20, 2, 16)
    o, ht = family.forms[form](**inputs)
    assert ht is None
    assert o.shape == (1, 20, 2, 16)
    assert o.dtype == torch.float32


@pytest.mark.parametrize("lengths", [[37, 0, 100, 64, 1], [3, 4, 300]], ids=["padded_batch", "one_by_one"])
@by_form
@by_family
def test_cu_seqlens_matches_separate_calls(family: Family, form: str, lengths: list[int]) -> None:
    fn, H, D = family.forms[form], 2, 32
    bounds = torch.tensor([0, *lengths]).cumsum(0)
    inputs = family.make_inputs(1, sum(lengths), H, D, h0=False)
    inputs["initial_state"] = torch.randn(len(lengths), H, D, D)
    cotangents = (torch.randn(1, sum(lengths), H, D), torch.randn(len(lengths), H, D, D))
    packed = family.run(fn, inputs, torch.float32, cotangents, cu_seqlens=bounds)
    pieces: dict[str, list[torch.Tensor]] = {}
    for i, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        segment = {n: x[:, a:b] for n, x in inputs.items() if n != "initial_state" and x is not None}
        segment["initial_state"] = inputs["initial_state"][i : i + 1]
        part = family.run(fn, segment, torch.float32, (cotangents[0][:, a:b], cotangents[1][i : i + 1]))
        for name, x in part.items():
            pieces.setdefault(name, []).append(x)
    for name, parts in pieces.items():
        joined = torch.cat(parts, dim=0 if name in ("ht", "dh0") else 1)
        assert_close(f"{family.name} {form} cu_seqlens {lengths} {name}", joined, packed[name], 1e-5)


@by_form
@pytest.mark.parametrize("family", DELTA_FAMILIES, ids=lambda f: f.name)
def test_qk_l2norm_in_kernel_matches_normalising_by_hand(family: Family, form: str) -> None:
    inputs = family.make_inputs(2, 70, 2, 32)
    inputs["k"] = torch.randn(2, 70, 2, 32) * 3  # raw keys: the kernel normalises them

    def by_hand(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        for name in ("q", "k"):
            kw[name] = kw[name] * torch.rsqrt(kw[name].pow(2).sum(-1, keepdim=True) + 1e-6)
        return family.forms[form](**kw)

    cotangents = (torch.randn(2, 70, 2, 32), torch.randn(2, 2, 32, 32))
    expected = family.run(by_hand, inputs, torch.float32, cotangents)
    got = family.run(family.forms[form], inputs, torch.float32, cotangents, use_qk_l2norm_in_kernel=True)
    for name in expected:
        assert_close(f"{family.name} {form} l2norm {name}", expected[name], got[name], 1e-5)


# Each case: (id, family, a call on make_inputs(1, 8, 2, 16) that must raise, the expected message).
BAD_ARGUMENTS: list[tuple[str, Family, Callable[..., object], str]] = [
    (
        "linear_attn-head_first",
        LINEAR_ATTN,
        lambda q, k, v, **_: LINEAR_ATTN.chunk(q, k, v, head_first=True),
        "head_first",
    ),
    (
        "linear_attn-v_shape",
        LINEAR_ATTN,
        lambda q, k, v, **_: LINEAR_ATTN.chunk(q, k, torch.randn(1, 8, 3, 16)),
        r"chunk_linear_attn: v has shape \(1, 8, 3, 16\), expected",
    ),
    (
        "linear_attn-3d_q",
        LINEAR_ATTN,
        lambda q, k, v, **_: LINEAR_ATTN.fused_recurrent(q[0], k[0], v[0]),
        "q must be a 4-D tensor",
    ),
    (
        "simple_gla-g_and_g_gamma",
        SIMPLE_GLA,
        lambda q, k, v, g, **_: SIMPLE_GLA.chunk(q, k, v, g, g_gamma=torch.zeros(2)),
        r"either g .* or g_gamma",
    ),
    (
        "simple_gla-g_gamma_shape",
        SIMPLE_GLA,
        lambda q, k, v, **_: SIMPLE_GLA.fused_recurrent(q, k, v, g_gamma=torch.zeros(3)),
        r"g_gamma has shape \(3,\), expected \[H\] = \(2,\)",
    ),
    (
        "simple_gla-head_first",
        SIMPLE_GLA,
        lambda q, k, v, g, **_: SIMPLE_GLA.chunk(q, k, v, g, head_first=True),
        "head_first",
    ),
    (
        "simple_gla-initial_state_shape",
        SIMPLE_GLA,
        lambda q, k, v, g, **_: SIMPLE_GLA.chunk(q, k, v, g, initial_state=torch.zeros(1, 2, 16, 8)),
        r"initial_state \[N, H, K, V\] has shape \(1, 2, 16, 8\)",
    ),
    (
        "delta_rule-head_first",
        DELTA_RULE,
        lambda q, k, v, beta, **_: DELTA_RULE.chunk(q, k, v, beta, head_first=True),
        "head_first",
    ),
    (
        "delta_rule-beta_shape",
        DELTA_RULE,
        lambda q, k, v, **_: DELTA_RULE.chunk(q, k, v, torch.rand(1, 8, 3)),
        r"chunk_delta_rule: beta has shape \(1, 8, 3\), expected \(1, 8, 2\)",
    ),
    (
        "delta_rule-headwise_beta",
        DELTA_RULE,
        lambda q, k, v, **_: DELTA_RULE.fused_recurrent(q, k, v, torch.rand(1, 8, 2, 16)),
        r"head-wise beta \(1, 8, 2, 16\) is not supported",
    ),
    (
        "delta_rule-k_shape",
        DELTA_RULE,
        lambda q, k, v, beta, **_: DELTA_RULE.fused_recurrent(q, k[..., :8], v, beta),
        r"fused_recurrent_delta_rule: k has shape \(1, 8, 2, 8\), expected",
    ),
    (
        "gated_delta_rule-head_first",
        GATED_DELTA_RULE,
        lambda q, k, v, g, beta, **_: GATED_DELTA_RULE.chunk(q, k, v, g, beta, head_first=True),
        "head_first",
    ),
    (
        "gated_delta_rule-beta_in_gk",
        GATED_DELTA_RULE,
        lambda q, k, v, g, beta, **_: GATED_DELTA_RULE.fused_recurrent(q, k, v, g, beta),
        r"gk, gv are not supported.*pass beta positionally",
    ),
    (
        "gated_delta_rule-g_shape",
        GATED_DELTA_RULE,
        lambda q, k, v, g, beta, **_: GATED_DELTA_RULE.chunk(q, k, v, g[..., 0], beta),
        r"chunk_gated_delta_rule: g has shape \(1, 8\), expected \(1, 8, 2\)",
    ),
    (
        "gated_delta_rule-beta_shape",
        GATED_DELTA_RULE,
        lambda q, k, v, g, **_: GATED_DELTA_RULE.chunk(q, k, v, g, torch.rand(1, 8, 3)),
        r"beta has shape \(1, 8, 3\), expected \(1, 8, 2\)",
    ),
]


@pytest.mark.parametrize(
    ("family", "call", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_ARGUMENTS]
)
def test_bad_arguments_raise_value_error(family: Family, call: Callable[..., object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(**family.make_inputs(1, 8, 2, 16))


# ----------------------------------------------------------------------------- linear attention only


def positive_features(B: int, T: int, H: int, D: int) -> Inputs:
    """elu + 1 feature maps keep <q_t, sum k_s> away from 0, so the normalised output is well conditioned."""
    return {
        "q": F.elu(torch.randn(B, T, H, D)) + 1,
        "k": F.elu(torch.randn(B, T, H, D)) + 1,
        "v": torch.randn(B, T, H, D),
    }


@by_form
def test_linear_attn_normalize_divides_by_the_running_key_sum(form: str) -> None:
    B, T, H, D = shape = (2, 130, 2, 32)
    x = positive_features(*shape)
    cotangents = (torch.randn(B, T, H, D), torch.randn(B, H, D, D))

    def by_hand(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> tuple[torch.Tensor, ...]:
        o, ht = LINEAR_ATTN.naive(q, k, v, output_final_state=True)
        z = (q * D**-0.5 * k.cumsum(1)).sum(-1, keepdim=True)
        return o / (z + 1e-10), ht

    reference = LINEAR_ATTN.run(by_hand, x, torch.float64, cotangents)
    got = LINEAR_ATTN.run(LINEAR_ATTN.forms[form], x, torch.float32, cotangents, normalize=True)
    LINEAR_ATTN.compare(f"{form} normalize {shape}", reference, got)


def test_linear_attn_normalize_defaults_follow_fla() -> None:
    x = positive_features(1, 40, 2, 16)
    chunk, fused_recurrent = LINEAR_ATTN.chunk, LINEAR_ATTN.fused_recurrent
    assert_close("chunk default", chunk(**x, normalize=True)[0], chunk(**x)[0], 0)
    plain = fused_recurrent(**x, normalize=False)[0]
    assert_close("fused_recurrent default", plain, fused_recurrent(**x)[0], 0)


def test_linear_attn_normalize_with_cu_seqlens_restarts_the_key_sum() -> None:
    x = positive_features(1, 90, 2, 16)
    o, _ = LINEAR_ATTN.chunk(**x, cu_seqlens=torch.tensor([0, 30, 90]))
    first = LINEAR_ATTN.chunk(**{n: t[:, :30] for n, t in x.items()})[0]
    second = LINEAR_ATTN.chunk(**{n: t[:, 30:] for n, t in x.items()})[0]
    assert_close("normalize per sequence", torch.cat([first, second], 1), o, 1e-5)


# ----------------------------------------------------------------------------- simple GLA only


@by_form
def test_simple_gla_g_gamma_is_a_constant_per_head_gate(form: str) -> None:
    x = SIMPLE_GLA.make_inputs(2, 90, 3, 16)
    gamma = -torch.rand(3) * 0.5
    full = x | {"g": gamma.expand(2, 90, 3).contiguous()}
    cotangents = (torch.randn(2, 90, 3, 16), torch.randn(2, 3, 16, 16))
    fn = SIMPLE_GLA.forms[form]
    expected = SIMPLE_GLA.run(fn, full, torch.float32, cotangents)
    got = SIMPLE_GLA.run(fn, x | {"g": None, "g_gamma": gamma}, torch.float32, cotangents)
    for name in ("o", "ht", "dq", "dk", "dv", "dh0"):
        assert_close(f"{form} g_gamma {name}", expected[name], got[name], 1e-5)
    assert_close(f"{form} dg_gamma", expected["dg"].sum((0, 1)), got["dg_gamma"], 1e-5)


def test_simple_gla_reverse_runs_the_recurrence_backwards_in_time() -> None:
    x = SIMPLE_GLA.make_inputs(2, 75, 2, 16)
    cotangents = (torch.randn(2, 75, 2, 16), torch.randn(2, 2, 16, 16))
    flipped = {n: (t.flip(1) if n != "initial_state" else t) for n, t in x.items() if t is not None}
    reference = SIMPLE_GLA.run(
        SIMPLE_GLA.naive, flipped, torch.float64, (cotangents[0].flip(1), cotangents[1])
    )
    got = SIMPLE_GLA.run(SIMPLE_GLA.fused_recurrent, x, torch.float32, cotangents, reverse=True)
    for name in ("o", "dq", "dk", "dv", "dg"):
        assert_close(f"reverse {name}", reference[name].flip(1), got[name], SIMPLE_GLA.tol[name])
    for name in ("ht", "dh0"):
        assert_close(f"reverse {name}", reference[name], got[name], SIMPLE_GLA.tol[name])
    # the same two sequences packed into one row: each must be reversed on its own
    flat = {n: (t.reshape(1, 150, *t.shape[2:]) if n != "initial_state" else t) for n, t in x.items()}
    o, ht = SIMPLE_GLA.fused_recurrent(
        **flat, output_final_state=True, reverse=True, cu_seqlens=torch.tensor([0, 75, 150])
    )
    assert_close("reverse with cu_seqlens o", got["o"].reshape(1, 150, 2, 16), o, 1e-5)
    assert_close("reverse with cu_seqlens ht", got["ht"], ht, 1e-5)


@by_form
def test_simple_gla_state_v_first_transposes_the_state(form: str) -> None:
    x = SIMPLE_GLA.make_inputs(1, 50, 2, 16)
    v = torch.randn(1, 50, 2, 24)  # V != K so a wrong transpose cannot pass
    h0 = torch.randn(1, 2, 16, 24)
    fn = SIMPLE_GLA.forms[form]
    o, ht = fn(x["q"], x["k"], v, x["g"], initial_state=h0, output_final_state=True)
    o_t, ht_t = fn(
        x["q"], x["k"], v, x["g"], initial_state=h0.mT, output_final_state=True, state_v_first=True
    )
    assert ht is not None and ht_t is not None
    assert_close(f"{form} state_v_first o", o, o_t, 1e-6)
    assert_close(f"{form} state_v_first ht", ht.mT, ht_t, 1e-6)


# ----------------------------------------------------------------------------- delta rules only


def test_delta_rule_fused_recurrent_beta_defaults_to_ones() -> None:
    x = DELTA_RULE.make_inputs(1, 40, 2, 16)
    o, _ = DELTA_RULE.fused_recurrent(x["q"], x["k"], x["v"])
    o_ones, _ = DELTA_RULE.chunk(x["q"], x["k"], x["v"], torch.ones(1, 40, 2))
    assert_close("beta=None is beta=1", o_ones, o, 1e-6)


def test_gated_delta_rule_fused_recurrent_defaults_match_fla() -> None:
    x = GATED_DELTA_RULE.make_inputs(1, 40, 2, 16)
    q, k, v, g, beta = x["q"], x["k"], x["v"], x["g"], x["beta"]
    fused_recurrent = GATED_DELTA_RULE.fused_recurrent
    o, _ = fused_recurrent(q, k, v, g=g)
    o_ones, _ = fused_recurrent(q, k, v, g=g, beta=torch.ones(1, 40, 2))
    assert_close("beta=None is beta=1", o_ones, o, 1e-6)
    o_nog, _ = fused_recurrent(q, k, v, beta=beta)
    o_zero, _ = GATED_DELTA_RULE.chunk(q, k, v, torch.zeros(1, 40, 2), beta)
    assert_close("g=None is g=0", o_zero, o_nog, 1e-6)
