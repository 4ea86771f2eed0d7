"""The researcher's typed architecture DSL: specs, rendering to layer source, mutation and crossover."""

from __future__ import annotations

from .baselines import BASELINES, DELTANET, GATED_DELTANET, LINEAR_ATTENTION
from .mutations import (
    OPERATORS,
    AdaptiveOperatorWeights,
    MutationNotApplicable,
    Operator,
    crossover,
    fit_kind,
    mutate,
)
from .render import render
from .spec import ArchitectureSpec, MixerSpec

__all__ = [
    "BASELINES",
    "DELTANET",
    "GATED_DELTANET",
    "LINEAR_ATTENTION",
    "OPERATORS",
    "AdaptiveOperatorWeights",
    "ArchitectureSpec",
    "MixerSpec",
    "MutationNotApplicable",
    "Operator",
    "crossover",
    "fit_kind",
    "mutate",
    "render",
]
