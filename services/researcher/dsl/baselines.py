"""Specs equivalent to the engineer's hand-written baselines (services/engineer/baselines/).

They are the usual starting points of an evolutionary run: rendering one gives the
same computation as the matching baseline file (parameter names aside).
"""

from __future__ import annotations

from .spec import ArchitectureSpec, MixerSpec

# Katharopoulos et al. (2020): phi = elu + 1, normalised read-out, per-head RMSNorm, no conv, no gate.
LINEAR_ATTENTION = ArchitectureSpec(
    mixer=MixerSpec(kind="linear_attn", feature_map="elu_plus_one", normalize=True),
    output_norm="rmsnorm",
)

# DeltaNet (Yang et al., 2024): short convs, L2-normalised q/k, sigmoid beta, gated RMSNorm output.
DELTANET = ArchitectureSpec(
    mixer=MixerSpec(kind="delta_rule", qk_norm="l2", beta="sigmoid"),
    conv_sizes=(4,),
    output_gate="swish",
    output_norm="rmsnorm",
)

# Gated DeltaNet (Yang et al., 2025): DeltaNet plus a Mamba-2 forget gate.
GATED_DELTANET = ArchitectureSpec(
    mixer=MixerSpec(kind="gated_delta_rule", qk_norm="l2", gate="mamba2", beta="sigmoid"),
    conv_sizes=(4,),
    output_gate="swish",
    output_norm="rmsnorm",
)

BASELINES: dict[str, ArchitectureSpec] = {
    "linear_attention": LINEAR_ATTENTION,
    "deltanet": DELTANET,
    "gated_deltanet": GATED_DELTANET,
}
