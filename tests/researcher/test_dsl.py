"""The researcher's architecture DSL: specs, validators, rendering, mutation, crossover, adaptive weights.

The walk test is the important one: long random mutation chains from each baseline
must only ever produce sources that pass the engineer's static checks and run a
causal forward and backward pass on CPU.
"""

from __future__ import annotations

import functools
import random
import types
from collections.abc import Callable, Iterator

import pytest
import torch
from pydantic import ValidationError

from asiarch.engineer.static_checks import run_static_checks
from asiarch.researcher.dsl import (
    BASELINES,
    DELTANET,
    GATED_DELTANET,
    LINEAR_ATTENTION,
    OPERATORS,
    AdaptiveOperatorWeights,
    ArchitectureSpec,
    MixerSpec,
    MutationNotApplicable,
    crossover,
    mutate,
    render,
)

HIDDEN, HEADS, BATCH, SEQ = 32, 4, 2, 19
WALK_STEPS = 200

HYBRID_MULTISCALE = ArchitectureSpec(
    mixer=MixerSpec(kind="gated_delta_rule", feature_map="silu", qk_norm="l2", gate="mamba2", beta="sigmoid"),
    secondary=MixerSpec(kind="simple_gla", feature_map="relu", gate="fixed_per_head"),
    conv_sizes=(2, 4),
    key_expand=0.5,
    value_expand=2.0,
    head_multiplier=2,
    output_gate="sigmoid",
    output_norm="rmsnorm",
    chunk_size=32,
)


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # The layers are tiny: with several intra-op threads on busy cores, thread hand-offs
    # cost more than the maths (measured ~15x slower). Restored for the other test modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _source(spec_json: str) -> str:
    # Keyed by JSON so each distinct spec is rendered once across all tests.
    return render(ArchitectureSpec.model_validate_json(spec_json))


@functools.cache
def _layer_class(spec_json: str) -> type[torch.nn.Module]:
    source = _source(spec_json)
    module = types.ModuleType("candidate")
    exec(compile(source, "<candidate>", "exec"), module.__dict__)
    return module.DeltaNet


def _checked_forward_backward(spec: ArchitectureSpec, causality: bool) -> None:
    spec_json = spec.model_dump_json()
    failed = [c for c in run_static_checks(_source(spec_json)) if not c.passed]
    assert not failed, f"{spec.summary()}: {failed}"
    torch.manual_seed(0)
    layer = _layer_class(spec_json)(hidden_size=HIDDEN, num_heads=HEADS)
    x = torch.randn(BATCH, SEQ, HIDDEN, requires_grad=True)
    out, extra = layer(x)
    assert extra is None
    assert out.shape == (BATCH, SEQ, HIDDEN), spec.summary()
    assert torch.isfinite(out).all(), spec.summary()
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, spec.summary()
    missing = [name for name, p in layer.named_parameters() if p.grad is None]
    assert not missing, f"{spec.summary()}: no gradient for {missing}"
    if causality:
        with torch.no_grad():
            perturbed = x.detach().clone()
            perturbed[:, -5:] += torch.randn(BATCH, 5, HIDDEN)
            before, _ = layer(x.detach())
            after, _ = layer(perturbed)
        torch.testing.assert_close(after[:, :-5], before[:, :-5], atol=1e-5, rtol=0, msg=spec.summary)


def _mixer_values(spec: ArchitectureSpec, field: str) -> list[object]:
    return [getattr(m, field) for m in spec.mixers]


# ---------------------------------------------------------------------------- spec


@pytest.mark.parametrize("spec", [*BASELINES.values(), HYBRID_MULTISCALE])
def test_json_round_trip(spec: ArchitectureSpec) -> None:
    assert ArchitectureSpec.model_validate_json(spec.model_dump_json()) == spec


def test_spec_is_frozen_and_canonical() -> None:
    with pytest.raises(ValidationError):
        DELTANET.chunk_size = 32  # type: ignore[misc]
    # Conv sizes are stored sorted, so the same layer always has the same JSON.
    a = DELTANET.model_copy(update={"conv_sizes": (2, 4)})
    b = ArchitectureSpec.model_validate({**DELTANET.model_dump(), "conv_sizes": [4, 2]})
    assert b.conv_sizes == (2, 4) == a.conv_sizes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mixer": {"kind": "simple_gla"}}, "needs a gate parameterisation"),
        ({"mixer": {"kind": "linear_attn", "gate": "mamba2"}}, "gate must be 'none'"),
        ({"mixer": {"kind": "delta_rule", "qk_norm": "l2"}}, "needs a beta parameterisation"),
        ({"mixer": {"kind": "linear_attn", "beta": "sigmoid"}}, "beta must be 'none'"),
        ({"mixer": {"kind": "delta_rule", "beta": "sigmoid"}}, "needs qk_norm='l2'"),
        (
            {"mixer": {"kind": "simple_gla", "gate": "mamba2", "normalize": True}},
            "only defined for 'linear_attn'",
        ),
        ({"mixer": {"kind": "linear_attn", "normalize": True}}, "needs a non-negative feature map"),
        ({"mixer": {"kind": "linear_attn"}, "conv_sizes": [9]}, "conv sizes must be in 2..8"),
        ({"mixer": {"kind": "linear_attn"}, "conv_sizes": [3, 3]}, "must be distinct"),
        ({"mixer": {"kind": "linear_attn"}, "conv_sizes": [2, 3, 4, 5]}, "at most 3 convolution scales"),
        ({"mixer": {"kind": "linear_attn"}, "key_expand": 3}, "expand ratio must be one of"),
        ({"mixer": {"kind": "linear_attn"}, "chunk_size": 8}, "chunk_size must be one of"),
        ({"mixer": {"kind": "linear_attn"}, "head_multiplier": 3}, "head_multiplier must be one of"),
        (
            {"mixer": {"kind": "linear_attn"}, "secondary": {"kind": "linear_attn"}},
            "identical to the primary",
        ),
        ({"mixer": {"kind": "linear_attn"}, "mixer_kind": "x"}, "Extra inputs are not permitted"),
        ({"mixer": {"kind": "softmax"}}, "Input should be"),
    ],
)
def test_validators_reject_with_clear_messages(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ArchitectureSpec.model_validate(data)


# ---------------------------------------------------------------------------- rendering


def test_render_honours_class_name_and_options() -> None:
    source = render(HYBRID_MULTISCALE, class_name="Candidate")
    assert all(c.passed for c in run_static_checks(source, class_name="Candidate"))
    assert "class Candidate(nn.Module):" in source
    # Every option leaves a readable trace in the source.
    for phrase in (
        "Multi-scale",
        "Hybrid, mixer 2",
        "per-channel mix",
        "Retention-style",
        "Mamba-2",
        "0.5 x hidden_size",
    ):
        assert phrase in source, phrase
    _checked_forward_backward(HYBRID_MULTISCALE, causality=True)


# ---------------------------------------------------------------------------- operators

HYBRID_LINEAR = HYBRID_MULTISCALE.model_copy(update={"secondary": LINEAR_ATTENTION.mixer})
_Claim = Callable[[ArchitectureSpec, ArchitectureSpec], bool]


def _changed_mixer_field(field: str) -> _Claim:
    return lambda old, new: _mixer_values(old, field) != _mixer_values(new, field)


CLAIMS: dict[str, tuple[ArchitectureSpec, _Claim]] = {
    "switch_mixer_kind": (DELTANET, _changed_mixer_field("kind")),
    "change_feature_map": (LINEAR_ATTENTION, _changed_mixer_field("feature_map")),
    "toggle_qk_l2_norm": (LINEAR_ATTENTION, _changed_mixer_field("qk_norm")),
    "change_gate_parameterisation": (GATED_DELTANET, _changed_mixer_field("gate")),
    "change_beta_parameterisation": (DELTANET, _changed_mixer_field("beta")),
    "toggle_linear_attn_normalize": (HYBRID_LINEAR, _changed_mixer_field("normalize")),
    "toggle_short_conv": (LINEAR_ATTENTION, lambda old, new: bool(old.conv_sizes) != bool(new.conv_sizes)),
    "change_conv_size": (
        DELTANET,
        lambda old, new: len(new.conv_sizes) == len(old.conv_sizes) and new.conv_sizes != old.conv_sizes,
    ),
    "add_conv_scale": (DELTANET, lambda old, new: len(new.conv_sizes) == len(old.conv_sizes) + 1),
    "remove_conv_scale": (HYBRID_MULTISCALE, lambda old, new: len(new.conv_sizes) == len(old.conv_sizes) - 1),
    "change_output_gate": (DELTANET, lambda old, new: old.output_gate != new.output_gate),
    "toggle_output_norm": (DELTANET, lambda old, new: old.output_norm != new.output_norm),
    "change_key_expand": (DELTANET, lambda old, new: old.key_expand != new.key_expand),
    "change_value_expand": (DELTANET, lambda old, new: old.value_expand != new.value_expand),
    "change_head_multiplier": (DELTANET, lambda old, new: old.head_multiplier != new.head_multiplier),
    "make_hybrid": (DELTANET, lambda old, new: old.secondary is None and new.secondary is not None),
    "unmake_hybrid": (
        HYBRID_MULTISCALE,
        lambda old, new: new.secondary is None and new.mixer in (old.mixer, old.secondary),
    ),
}


def test_operator_registry_is_documented() -> None:
    assert len(OPERATORS) >= 12
    assert set(CLAIMS) == set(OPERATORS), "every operator needs a claim in this test"
    for name, op in OPERATORS.items():
        assert op.__doc__ and op.__doc__.strip().startswith("Explores"), name


def _code(source: str) -> list[str]:
    """The lines that run: a child that differs only in comments and docstrings is the same layer."""
    import ast

    return ast.unparse(ast.parse(source)).splitlines()


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_every_operator_changes_the_code_that_runs(name: str) -> None:
    # An operator that only rewrote a comment (the old change_chunk_size) re-trained identical layers.
    start, _ = CLAIMS[name]
    for seed in range(4):
        child = OPERATORS[name](start, random.Random(seed))
        assert _code(render(child)) != _code(render(start)), f"{name} (seed {seed}) changed no code"


def test_weights_of_retired_operators_are_dropped() -> None:
    restored = AdaptiveOperatorWeights.from_dict({"weights": {"change_chunk_size": 3.0, "make_hybrid": 2.0}})
    assert "change_chunk_size" not in restored.weights and restored.weights["make_hybrid"] == 2.0


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_operator_changes_what_it_claims(name: str) -> None:
    start, claim = CLAIMS[name]
    for seed in range(8):
        child = OPERATORS[name](start, random.Random(seed))
        assert isinstance(child, ArchitectureSpec)
        assert claim(start, child), f"{name} (seed {seed}): {start.summary()} -> {child.summary()}"
        # Everything the operator does not claim stays put (top-level fields it does not own).
        untouched = {"chunk_size", "key_expand", "value_expand", "head_multiplier"} - {
            name.removeprefix("change_")
        }
        for field in untouched:
            assert getattr(child, field) == getattr(start, field), (name, field)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("change_beta_parameterisation", LINEAR_ATTENTION),
        ("change_gate_parameterisation", DELTANET),
        ("toggle_qk_l2_norm", DELTANET),
        ("toggle_linear_attn_normalize", GATED_DELTANET),
        ("change_conv_size", LINEAR_ATTENTION),
        ("remove_conv_scale", DELTANET),
        ("unmake_hybrid", DELTANET),
        ("make_hybrid", HYBRID_MULTISCALE),
    ],
)
def test_inapplicable_operators_say_so(name: str, spec: ArchitectureSpec) -> None:
    with pytest.raises(MutationNotApplicable):
        OPERATORS[name](spec, random.Random(0))


def test_mutate_returns_a_different_valid_spec_and_its_operator() -> None:
    rng = random.Random(1)
    for spec in BASELINES.values():
        for _ in range(20):
            child, name = mutate(spec, rng)
            assert name in OPERATORS
            assert child != spec
            assert ArchitectureSpec.model_validate_json(child.model_dump_json()) == child


# ---------------------------------------------------------------------------- crossover


def test_crossover_children_are_valid_and_inherit_each_field() -> None:
    rng = random.Random(7)
    pool = [*BASELINES.values(), HYBRID_MULTISCALE]
    spec = GATED_DELTANET
    for _ in range(30):
        spec, _ = mutate(spec, rng)
        pool.append(spec)
    for _ in range(200):
        a, b = rng.sample(pool, 2)
        child = crossover(a, b, rng)
        assert ArchitectureSpec.model_validate_json(child.model_dump_json()) == child
        for field in (
            "conv_sizes",
            "key_expand",
            "value_expand",
            "head_multiplier",
            "output_gate",
            "chunk_size",
        ):
            assert getattr(child, field) in (getattr(a, field), getattr(b, field)), field
        assert child.mixer.kind in (a.mixer.kind, b.mixer.kind)


def test_crossover_of_identical_parents_is_the_parent() -> None:
    assert crossover(DELTANET, DELTANET, random.Random(0)) == DELTANET


# ---------------------------------------------------------------------------- adaptive weights


def test_weights_adapt_and_never_reach_zero() -> None:
    weights = AdaptiveOperatorWeights()
    weights.record("make_hybrid", success=True)
    weights.record("toggle_short_conv", success=False)
    assert weights.weights["make_hybrid"] > 1.0 > weights.weights["toggle_short_conv"]
    for _ in range(1000):
        weights.record("toggle_short_conv", success=False)
        weights.record("make_hybrid", success=True)
    assert weights.weights["toggle_short_conv"] == weights.floor > 0
    assert weights.weights["make_hybrid"] == weights.ceiling
    assert min(weights.probabilities().values()) > 0
    assert sum(weights.probabilities().values()) == pytest.approx(1.0)


def test_weights_round_trip_and_steer_mutate() -> None:
    weights = AdaptiveOperatorWeights(rate=0.5)
    for _ in range(30):
        weights.record("change_head_multiplier", success=True)
        for name in OPERATORS:
            if name != "change_head_multiplier":
                weights.record(name, success=False)
    restored = AdaptiveOperatorWeights.from_dict(weights.to_dict())
    assert restored == weights
    rng = random.Random(3)
    names = [mutate(DELTANET, rng, restored)[1] for _ in range(100)]
    assert names.count("change_head_multiplier") > 50
    # Operators unknown to the request's sender start neutral; unknown names are rejected.
    partial = AdaptiveOperatorWeights.from_dict({"weights": {"make_hybrid": 2.0}})
    assert partial.weights["make_hybrid"] == 2.0 and partial.weights["toggle_short_conv"] == 1.0
    with pytest.raises(ValueError, match="unknown mutation operators"):
        AdaptiveOperatorWeights.from_dict({"weights": {"no_such_op": 1.0}})
    with pytest.raises(ValueError, match="must be positive"):
        AdaptiveOperatorWeights.from_dict({"weights": {"make_hybrid": 0.0}})
    with pytest.raises(ValueError, match="unknown mutation operator"):
        weights.record("no_such_op", success=True)


# ---------------------------------------------------------------------------- the walk


@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_walk_renders_valid_causal_layers(baseline: str) -> None:
    rng = random.Random(f"walk-{baseline}")
    weights = AdaptiveOperatorWeights()
    spec = BASELINES[baseline]
    seen: set[str] = set()
    used: set[str] = set()
    for step in range(WALK_STEPS + 1):
        key = spec.model_dump_json()
        if key not in seen:
            seen.add(key)
            # Causality is the costliest check (two more forward passes): a sample suffices.
            _checked_forward_backward(spec, causality=step % 10 == 0)
        if step < WALK_STEPS:
            spec, name = mutate(spec, rng, weights)
            used.add(name)
            # Exercise the adaptive path too: pretend every third child was an improvement.
            weights.record(name, success=step % 3 == 0)
    # A 200-step walk should touch most of the operator set.
    assert len(used) >= len(OPERATORS) - 3, sorted(set(OPERATORS) - used)
