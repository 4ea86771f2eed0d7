"""Mutation and crossover operators on `ArchitectureSpec`, with success-adaptive operator weights.

Every operator is a pure function `(spec, rng) -> spec` that changes one aspect of
the layer and returns a validated spec. An operator that does not apply to a spec
(e.g. changing beta on linear attention) raises `MutationNotApplicable`; `mutate`
then simply draws again. All randomness comes from the caller's seeded
`random.Random`, so a run is reproducible from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .spec import (
    BETA_PARAMS,
    CONV_SIZES,
    DELTA_KINDS,
    EXPAND_RATIOS,
    FEATURE_MAPS,
    GATE_PARAMS,
    GATED_KINDS,
    HEAD_MULTIPLIERS,
    MAX_CONV_SCALES,
    MIXER_KINDS,
    NONNEGATIVE_FEATURE_MAPS,
    OUTPUT_GATES,
    ArchitectureSpec,
    MixerSpec,
)

Operator = Callable[[ArchitectureSpec, random.Random], ArchitectureSpec]


class MutationNotApplicable(Exception):
    """The operator has nothing to change on this spec (not an error: `mutate` draws another)."""


# ---------------------------------------------------------------------------- helpers


def _replace(spec: ArchitectureSpec, **changes: Any) -> ArchitectureSpec:
    """A validated copy of spec with changes (model_copy would skip validation)."""
    data = spec.model_dump()
    data.update({k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in changes.items()})
    return ArchitectureSpec.model_validate(data)


def _other(rng: random.Random, options: tuple[Any, ...] | list[Any], current: Any) -> Any:
    choices = [o for o in options if o != current]
    if not choices:
        raise MutationNotApplicable(f"no alternative to {current!r}")
    return rng.choice(choices)


def _branches(spec: ArchitectureSpec, applies: Callable[[MixerSpec], bool]) -> list[str]:
    """Names of the mixer fields ('mixer', 'secondary') whose mixer the operator applies to."""
    names = ["mixer"] + (["secondary"] if spec.secondary is not None else [])
    found = [n for n in names if applies(spec.mixer if n == "mixer" else spec.secondary)]  # type: ignore[arg-type]
    if not found:
        raise MutationNotApplicable("no mixer this operator applies to")
    return found


def _mutate_branch(
    spec: ArchitectureSpec,
    rng: random.Random,
    applies: Callable[[MixerSpec], bool],
    change: Callable[[MixerSpec], MixerSpec],
) -> ArchitectureSpec:
    """Apply change to one applicable mixer (chosen at random in a hybrid)."""
    name = rng.choice(_branches(spec, applies))
    mixer = spec.mixer if name == "mixer" else spec.secondary
    assert mixer is not None  # _branches only returns present mixers
    return _replace(spec, **{name: change(mixer)})


def fit_kind(mixer: MixerSpec, kind: str, rng: random.Random) -> MixerSpec:
    """mixer turned into kind, keeping every field that is still valid and filling the rest.

    Gated kinds need a gate and delta kinds a beta (a random one when the mixer has none);
    delta kinds need L2-normalised q/k; normalize survives only on linear attention.
    """
    gate, beta = mixer.gate, mixer.beta
    if kind in GATED_KINDS and gate == "none":
        gate = rng.choice([g for g in GATE_PARAMS if g != "none"])
    elif kind not in GATED_KINDS:
        gate = "none"
    if kind in DELTA_KINDS and beta == "none":
        beta = rng.choice([b for b in BETA_PARAMS if b != "none"])
    elif kind not in DELTA_KINDS:
        beta = "none"
    return MixerSpec.model_validate(
        {
            "kind": kind,
            "feature_map": mixer.feature_map,
            "qk_norm": "l2" if kind in DELTA_KINDS else mixer.qk_norm,
            "gate": gate,
            "beta": beta,
            "normalize": (
                mixer.normalize and kind == "linear_attn" and mixer.feature_map in NONNEGATIVE_FEATURE_MAPS
            ),
        }
    )


# ---------------------------------------------------------------------------- operators


def switch_mixer_kind(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores the recurrence itself: linear attention, decayed (GLA), delta rule, gated delta rule."""

    def change(m: MixerSpec) -> MixerSpec:
        return fit_kind(m, _other(rng, MIXER_KINDS, m.kind), rng)

    return _mutate_branch(spec, rng, lambda m: True, change)


def change_feature_map(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores the q/k feature map phi (identity, elu+1, relu, silu, softmax over the head dim)."""

    def change(m: MixerSpec) -> MixerSpec:
        # A normalised linear attention needs non-negative features; offer only those.
        options = tuple(f for f in FEATURE_MAPS if not m.normalize or f in NONNEGATIVE_FEATURE_MAPS)
        return m.model_copy(update={"feature_map": _other(rng, options, m.feature_map)})

    return _mutate_branch(spec, rng, lambda m: True, change)


def toggle_qk_l2_norm(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores unit-length q/k (bounded similarities) versus raw ones; delta kinds always keep L2."""

    def change(m: MixerSpec) -> MixerSpec:
        return m.model_copy(update={"qk_norm": "none" if m.qk_norm == "l2" else "l2"})

    return _mutate_branch(spec, rng, lambda m: m.kind not in DELTA_KINDS, change)


def change_gate_parameterisation(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores how the forget gate is produced: Mamba-2, GLA log-sigmoid, or fixed per head (retention)."""

    def change(m: MixerSpec) -> MixerSpec:
        options = tuple(g for g in GATE_PARAMS if g != "none")
        return MixerSpec.model_validate({**m.model_dump(), "gate": _other(rng, options, m.gate)})

    return _mutate_branch(spec, rng, lambda m: m.kind in GATED_KINDS, change)


def change_beta_parameterisation(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores the delta-rule write strength: sigmoid, 2*sigmoid (negative eigenvalues), constant 1."""

    def change(m: MixerSpec) -> MixerSpec:
        options = tuple(b for b in BETA_PARAMS if b != "none")
        return MixerSpec.model_validate({**m.model_dump(), "beta": _other(rng, options, m.beta)})

    return _mutate_branch(spec, rng, lambda m: m.kind in DELTA_KINDS, change)


def toggle_linear_attn_normalize(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores linear attention's normalised read-out; turning it on also makes phi non-negative (elu+1)."""

    def change(m: MixerSpec) -> MixerSpec:
        if m.normalize:
            return MixerSpec.model_validate({**m.model_dump(), "normalize": False})
        feature_map = m.feature_map if m.feature_map in NONNEGATIVE_FEATURE_MAPS else "elu_plus_one"
        return MixerSpec.model_validate({**m.model_dump(), "normalize": True, "feature_map": feature_map})

    return _mutate_branch(spec, rng, lambda m: m.kind == "linear_attn", change)


def toggle_short_conv(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores local context before mixing: adds a short causal conv (random width) or removes all convs."""
    if spec.conv_sizes:
        return _replace(spec, conv_sizes=())
    return _replace(spec, conv_sizes=(rng.choice(CONV_SIZES),))


def change_conv_size(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores the width of the local context: replaces one convolution width with another (2-8)."""
    if not spec.conv_sizes:
        raise MutationNotApplicable("no short convolution")
    old = rng.choice(spec.conv_sizes)
    new = _other(rng, [s for s in CONV_SIZES if s not in spec.conv_sizes], None)
    return _replace(spec, conv_sizes=tuple(new if s == old else s for s in spec.conv_sizes))


def add_conv_scale(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores multi-scale local context: adds another convolution width, summed with the others."""
    if not spec.conv_sizes or len(spec.conv_sizes) >= MAX_CONV_SCALES:
        raise MutationNotApplicable("needs between 1 and MAX_CONV_SCALES - 1 convolutions")
    new = _other(rng, [s for s in CONV_SIZES if s not in spec.conv_sizes], None)
    return _replace(spec, conv_sizes=(*spec.conv_sizes, new))


def remove_conv_scale(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores simpler local context: drops one width from a multi-scale convolution."""
    if len(spec.conv_sizes) < 2:
        raise MutationNotApplicable("not a multi-scale convolution")
    drop = rng.choice(spec.conv_sizes)
    return _replace(spec, conv_sizes=tuple(s for s in spec.conv_sizes if s != drop))


def change_output_gate(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores output gating: none, swish (GLU-like) or sigmoid filter on the mixer output."""
    return _replace(spec, output_gate=_other(rng, OUTPUT_GATES, spec.output_gate))


def toggle_output_norm(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores per-head RMSNorm of the mixer output (scale control) versus none."""
    return _replace(spec, output_norm="none" if spec.output_norm == "rmsnorm" else "rmsnorm")


def change_key_expand(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores state size and key capacity: q/k width 0.5, 1 or 2 x hidden_size."""
    return _replace(spec, key_expand=_other(rng, EXPAND_RATIOS, spec.key_expand))


def change_value_expand(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores value width (state size and output richness): 0.5, 1 or 2 x hidden_size."""
    return _replace(spec, value_expand=_other(rng, EXPAND_RATIOS, spec.value_expand))


def change_head_multiplier(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores many narrow heads versus fewer wide ones (heads = num_heads x multiplier)."""
    return _replace(spec, head_multiplier=_other(rng, HEAD_MULTIPLIERS, spec.head_multiplier))


def make_hybrid(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores hybrids: adds a second mixer of another kind, mixed in by a learned per-channel gate."""
    if spec.secondary is not None:
        raise MutationNotApplicable("already a hybrid")
    kind = _other(rng, MIXER_KINDS, spec.mixer.kind)
    return _replace(spec, secondary=fit_kind(spec.mixer, kind, rng))


def unmake_hybrid(spec: ArchitectureSpec, rng: random.Random) -> ArchitectureSpec:
    """Explores simplification: drops one mixer of a hybrid (either one), keeping the other."""
    if spec.secondary is None:
        raise MutationNotApplicable("not a hybrid")
    keep = rng.choice((spec.mixer, spec.secondary))
    return _replace(spec, mixer=keep, secondary=None)


OPERATORS: dict[str, Operator] = {
    op.__name__: op
    for op in (
        switch_mixer_kind,
        change_feature_map,
        toggle_qk_l2_norm,
        change_gate_parameterisation,
        change_beta_parameterisation,
        toggle_linear_attn_normalize,
        toggle_short_conv,
        change_conv_size,
        add_conv_scale,
        remove_conv_scale,
        change_output_gate,
        toggle_output_norm,
        change_key_expand,
        change_value_expand,
        change_head_multiplier,
        make_hybrid,
        unmake_hybrid,
    )
}
# Operators that no longer exist. `change_chunk_size` only rewrote a comment (the kernels pick their own
# chunking), so it re-trained identical layers. Weights for them, from runs made before, are dropped.
RETIRED_OPERATORS = frozenset({"change_chunk_size"})


# ---------------------------------------------------------------------------- adaptive weights


@dataclass
class AdaptiveOperatorWeights:
    """Operator weights that follow past success: success multiplies by (1 + rate), failure by (1 - rate).

    Weights are clamped to [floor, ceiling]: the floor keeps every operator alive (an
    operator that failed early may be what a later population needs), the ceiling
    stops one lucky operator from taking over. The researcher is stateless, so the
    weights travel in requests as `to_dict()` / `from_dict()`.
    """

    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OPERATORS, 1.0))
    rate: float = 0.2
    floor: float = 0.05
    ceiling: float = 20.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(OPERATORS))
        if unknown:
            raise ValueError(f"unknown mutation operators {unknown}; known: {sorted(OPERATORS)}")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {self.rate}")
        if not 0 < self.floor <= 1 <= self.ceiling:
            raise ValueError(
                f"need 0 < floor <= 1 <= ceiling, got floor={self.floor}, ceiling={self.ceiling}"
            )
        bad = {name: w for name, w in self.weights.items() if not w > 0}
        if bad:
            raise ValueError(f"operator weights must be positive, got {bad}")
        # Operators added since the weights were saved start at the neutral weight 1.
        self.weights = {name: self._clamp(self.weights.get(name, 1.0)) for name in OPERATORS}

    def _clamp(self, weight: float) -> float:
        return min(self.ceiling, max(self.floor, weight))

    def record(self, operator: str, success: bool) -> None:
        """Update after evaluating a child made by operator (success: it beat its parent, say)."""
        if operator not in self.weights:
            raise ValueError(f"unknown mutation operator {operator!r}")
        factor = 1 + self.rate if success else 1 - self.rate
        self.weights[operator] = self._clamp(self.weights[operator] * factor)

    def probabilities(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {name: w / total for name, w in self.weights.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "rate": self.rate,
            "floor": self.floor,
            "ceiling": self.ceiling,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptiveOperatorWeights:
        return cls(
            weights={
                str(k): float(v)
                for k, v in dict(data.get("weights", {})).items()
                if k not in RETIRED_OPERATORS
            },
            rate=float(data.get("rate", 0.2)),
            floor=float(data.get("floor", 0.05)),
            ceiling=float(data.get("ceiling", 20.0)),
        )


def mutate(
    spec: ArchitectureSpec,
    rng: random.Random,
    weights: AdaptiveOperatorWeights | None = None,
    max_attempts: int = 200,
) -> tuple[ArchitectureSpec, str]:
    """A valid child that differs from spec, and the name of the operator that made it.

    Operators are drawn by weight; draws that do not apply or produce an invalid or
    unchanged spec are retried (they cost nothing but a draw).
    """
    weights = weights or AdaptiveOperatorWeights()
    names = list(weights.weights)
    values = [weights.weights[n] for n in names]
    for _ in range(max_attempts):
        name = rng.choices(names, weights=values)[0]
        try:
            child = OPERATORS[name](spec, rng)
        except (MutationNotApplicable, ValidationError):
            continue
        if child != spec:
            return child, name
    raise RuntimeError(f"no valid mutation of {spec.summary()} found in {max_attempts} attempts")


# ---------------------------------------------------------------------------- crossover


def _mix_mixers(a: MixerSpec, b: MixerSpec, rng: random.Random) -> MixerSpec:
    """Uniform per-field crossover of two mixers, repaired to be valid for the kind it picked."""
    da, db = a.model_dump(), b.model_dump()
    data = {name: rng.choice((da[name], db[name])) for name in MixerSpec.model_fields}
    # model_construct skips validation on purpose: the mix may be invalid until fit_kind repairs it.
    return fit_kind(MixerSpec.model_construct(**data), data["kind"], rng)


def crossover(
    a: ArchitectureSpec, b: ArchitectureSpec, rng: random.Random, max_attempts: int = 20
) -> ArchitectureSpec:
    """A valid child taking each field from a or b uniformly (mixers mixed field by field).

    If every attempt is invalid (e.g. a hybrid whose two mixers came out equal), one
    parent is returned unchanged.
    """
    for _ in range(max_attempts):
        data: dict[str, Any] = {}
        for name in ArchitectureSpec.model_fields:
            va, vb = getattr(a, name), getattr(b, name)
            if isinstance(va, MixerSpec) and isinstance(vb, MixerSpec):
                data[name] = _mix_mixers(va, vb, rng).model_dump()
            else:
                chosen = rng.choice((va, vb))
                data[name] = chosen.model_dump() if isinstance(chosen, BaseModel) else chosen
        try:
            return ArchitectureSpec.model_validate(data)
        except ValidationError:
            continue
    return rng.choice((a, b))
