"""Typed description of one token-mixing layer built from `asiarch.kernels` primitives.

An `ArchitectureSpec` is the researcher's genome: small, frozen, validated and
JSON-serialisable, so it can travel in requests, be stored next to results and
be mutated without ever producing a layer that cannot be rendered. Everything
that depends on the model size (hidden size, number of heads) is expressed as a
ratio, because the engineer builds the layer with its own `hidden_size` and
`num_heads`.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

MixerKind = Literal["linear_attn", "simple_gla", "delta_rule", "gated_delta_rule"]
FeatureMap = Literal["identity", "elu_plus_one", "relu", "silu", "softmax_dim"]
QKNorm = Literal["none", "l2"]
GateParam = Literal["none", "mamba2", "sigmoid_log", "fixed_per_head"]
BetaParam = Literal["none", "sigmoid", "sigmoid_times_two", "constant_one"]
OutputGate = Literal["none", "swish", "sigmoid"]
OutputNorm = Literal["none", "rmsnorm"]

MIXER_KINDS: tuple[MixerKind, ...] = get_args(MixerKind)
FEATURE_MAPS: tuple[FeatureMap, ...] = get_args(FeatureMap)
QK_NORMS: tuple[QKNorm, ...] = get_args(QKNorm)
GATE_PARAMS: tuple[GateParam, ...] = get_args(GateParam)
BETA_PARAMS: tuple[BetaParam, ...] = get_args(BetaParam)
OUTPUT_GATES: tuple[OutputGate, ...] = get_args(OutputGate)
OUTPUT_NORMS: tuple[OutputNorm, ...] = get_args(OutputNorm)

# Kinds whose state decays (need a gate) and kinds that use the delta rule (need beta).
GATED_KINDS: frozenset[str] = frozenset({"simple_gla", "gated_delta_rule"})
DELTA_KINDS: frozenset[str] = frozenset({"delta_rule", "gated_delta_rule"})
# Feature maps that keep q and k non-negative, so linear attention's normaliser q.sum(k) stays positive.
NONNEGATIVE_FEATURE_MAPS: frozenset[str] = frozenset({"elu_plus_one", "relu", "softmax_dim"})

EXPAND_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)
CONV_SIZES: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
MAX_CONV_SCALES = 3
CHUNK_SIZES: tuple[int, ...] = (16, 32, 64)
HEAD_MULTIPLIERS: tuple[int, ...] = (1, 2)


class MixerSpec(BaseModel):
    """One recurrence: the kernel plus how its inputs (q/k feature map, gate, beta) are produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: MixerKind
    feature_map: FeatureMap = "identity"
    qk_norm: QKNorm = "none"
    gate: GateParam = "none"
    beta: BetaParam = "none"
    # Only linear attention has it: divide o_t by q_t . sum_{s<=t} k_s (FLA's `normalize`).
    normalize: bool = False

    @model_validator(mode="after")
    def _check_combination(self) -> MixerSpec:
        if self.kind in GATED_KINDS and self.gate == "none":
            raise ValueError(
                f"mixer {self.kind!r} decays its state and needs a gate parameterisation "
                f"(one of 'mamba2', 'sigmoid_log', 'fixed_per_head'), got gate='none'"
            )
        if self.kind not in GATED_KINDS and self.gate != "none":
            raise ValueError(
                f"mixer {self.kind!r} has no decay, so gate must be 'none' (got {self.gate!r}); "
                f"use 'simple_gla' or 'gated_delta_rule' for a gated state"
            )
        if self.kind in DELTA_KINDS and self.beta == "none":
            raise ValueError(
                f"mixer {self.kind!r} uses the delta rule and needs a beta parameterisation "
                f"(one of 'sigmoid', 'sigmoid_times_two', 'constant_one'), got beta='none'"
            )
        if self.kind not in DELTA_KINDS and self.beta != "none":
            raise ValueError(
                f"mixer {self.kind!r} has no delta rule, so beta must be 'none' (got {self.beta!r})"
            )
        if self.kind in DELTA_KINDS and self.qk_norm != "l2":
            # With ||k|| > 1 the delta update I - beta k k^T can have eigenvalues beyond [-1, 1]
            # and the state blows up; L2-normalised keys keep it a contraction.
            raise ValueError(
                f"mixer {self.kind!r} needs qk_norm='l2' (keys must be unit length to stay stable)"
            )
        if self.normalize and self.kind != "linear_attn":
            raise ValueError(f"normalize=True is only defined for 'linear_attn', not {self.kind!r}")
        if self.normalize and self.feature_map not in NONNEGATIVE_FEATURE_MAPS:
            raise ValueError(
                f"normalize=True needs a non-negative feature map ({sorted(NONNEGATIVE_FEATURE_MAPS)}), "
                f"got {self.feature_map!r}: the normaliser could reach zero or change sign"
            )
        return self


class ArchitectureSpec(BaseModel):
    """A complete token-mixing layer; `render` turns it into the engineer's `DeltaNet` module."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mixer: MixerSpec
    # Hybrid layer: a second mixer on the same q/k/v, combined with the first by a learned
    # per-channel sigmoid gate m: o = m * o_1 + (1 - m) * o_2. None: a single mixer.
    secondary: MixerSpec | None = None
    # Causal depthwise convolutions on q, k and v: () is off, one size is the usual short
    # convolution, several sizes are summed (multi-scale: local patterns of several widths).
    conv_sizes: tuple[int, ...] = ()
    # Key (q/k) and value widths as multiples of hidden_size.
    key_expand: float = 1.0
    value_expand: float = 1.0
    # Heads actually used = num_heads * head_multiplier (narrower heads, more of them).
    head_multiplier: int = 1
    output_gate: OutputGate = "none"
    output_norm: OutputNorm = "none"
    # Accepted for specs written before: the public kernel API picks its own chunking, so it has
    # no effect on the rendered layer and no operator changes it (a no-op re-trained identical layers).
    chunk_size: int = 64

    @field_validator("conv_sizes")
    @classmethod
    def _check_conv_sizes(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        # The count first: the other messages quote the sizes, which must stay short.
        if len(sizes) > MAX_CONV_SCALES:
            raise ValueError(f"at most {MAX_CONV_SCALES} convolution scales, got {len(sizes)}")
        bad = [s for s in sizes if s not in CONV_SIZES]
        if bad:
            raise ValueError(f"conv sizes must be in {CONV_SIZES[0]}..{CONV_SIZES[-1]}, got {bad}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"conv sizes must be distinct, got {list(sizes)}")
        # Canonical order, so equal layers have equal specs (and equal JSON).
        return tuple(sorted(sizes))

    @field_validator("key_expand", "value_expand")
    @classmethod
    def _check_expand(cls, ratio: float) -> float:
        if ratio not in EXPAND_RATIOS:
            raise ValueError(f"expand ratio must be one of {EXPAND_RATIOS}, got {ratio}")
        return float(ratio)

    @field_validator("head_multiplier")
    @classmethod
    def _check_heads(cls, multiplier: int) -> int:
        if multiplier not in HEAD_MULTIPLIERS:
            raise ValueError(f"head_multiplier must be one of {HEAD_MULTIPLIERS}, got {multiplier}")
        return multiplier

    @field_validator("chunk_size")
    @classmethod
    def _check_chunk(cls, size: int) -> int:
        if size not in CHUNK_SIZES:
            raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {size}")
        return size

    @model_validator(mode="after")
    def _check_hybrid(self) -> ArchitectureSpec:
        if self.secondary is not None and self.secondary == self.mixer:
            raise ValueError("hybrid layer: the secondary mixer is identical to the primary one (no hybrid)")
        return self

    @property
    def is_hybrid(self) -> bool:
        return self.secondary is not None

    @property
    def mixers(self) -> tuple[MixerSpec, ...]:
        return (self.mixer,) if self.secondary is None else (self.mixer, self.secondary)

    def summary(self) -> str:
        """One line for logs and prompts, e.g. 'gated_delta_rule[silu,l2,mamba2,sigmoid] conv(4) ...'."""

        def one(m: MixerSpec) -> str:
            parts = [m.feature_map, m.qk_norm, m.gate, m.beta] + (["normalize"] if m.normalize else [])
            return f"{m.kind}[{','.join(p for p in parts if p != 'none')}]"

        mixers = " + ".join(one(m) for m in self.mixers)
        conv = f"conv{self.conv_sizes}" if self.conv_sizes else "no-conv"
        return (
            f"{mixers} {conv} k{self.key_expand:g} v{self.value_expand:g} heads x{self.head_multiplier} "
            f"gate={self.output_gate} norm={self.output_norm} chunk={self.chunk_size}"
        )
