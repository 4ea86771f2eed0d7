"""Proposals and repairs without an LLM: DSL mutation, and deterministic spec repair.

This is the path taken when no LLM is configured, or when the LLM fails or
times out. It always produces a valid, renderable candidate, and it says
which path produced it (origin and generator) so results can be split by it.
"""

from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass

from pydantic import ValidationError

from asiarch.common.errors import FailedPrecondition, InvalidArgument
from asiarch.researcher.dsl import (
    BASELINES,
    DELTANET,
    GATED_DELTANET,
    LINEAR_ATTENTION,
    OPERATORS,
    AdaptiveOperatorWeights,
    ArchitectureSpec,
    mutate,
    render,
)
from asiarch.v1 import common_pb2

MUTATION_PREFIX = "mutation:"
NAME_LIMIT = 64


@dataclass(frozen=True)
class Draft:
    name: str
    motivation: str
    spec: ArchitectureSpec
    operator: str


def load_spec(text: str, field: str) -> ArchitectureSpec:
    """The spec in a request field; InvalidArgument naming the field with the first problem."""
    try:
        return ArchitectureSpec.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidArgument(f"{field} is not a valid spec: {exc.errors()[0]['msg']}") from None


def parent_spec(parent: common_pb2.Experiment) -> tuple[ArchitectureSpec, str]:
    """The parent's spec, or the closest baseline when it was free-form code (and why)."""
    if parent.proposal.spec_json:
        return load_spec(parent.proposal.spec_json, "parent.proposal.spec_json"), "the parent's spec"
    baseline = BASELINES.get(parent.proposal.name.replace("-", "_"))
    if baseline is not None:
        return baseline, f"the {parent.proposal.name} baseline's spec"
    source = parent.proposal.source.module_source
    closest = (
        GATED_DELTANET
        if "gated_delta_rule" in source
        else DELTANET
        if "delta_rule" in source
        else LINEAR_ATTENTION
    )
    return closest, "the closest baseline (the parent is free-form code)"


def operator_weights(
    parent: common_pb2.Experiment, references: list[common_pb2.Experiment]
) -> AdaptiveOperatorWeights:
    """Weights learned from the history in the request: operators whose children scored well gain weight.

    The researcher is stateless; the lineage the orchestrator sends (parent and
    references) carries which operator made each experiment and how it did.
    """
    weights = AdaptiveOperatorWeights()
    history = [e for e in (parent, *references) if e.proposal.generator.startswith(MUTATION_PREFIX)]
    scores = [e.fitness.total for e in history if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED]
    median = statistics.median(scores) if scores else 0.0
    for experiment in history:
        operator = experiment.proposal.generator.removeprefix(MUTATION_PREFIX)
        if operator in OPERATORS:
            succeeded = experiment.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED
            weights.record(operator, succeeded and experiment.fitness.total >= median)
    return weights


def _name(parent: str, operator: str, seed: int) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", parent)[:32] or "candidate"
    return f"{base}.{operator.replace('_', '-')}.{seed % 10000:04d}"[:NAME_LIMIT]


def mutation_draft(
    parent: common_pb2.Experiment, references: list[common_pb2.Experiment], seed: int, avoid: set[str]
) -> Draft:
    spec, origin = parent_spec(parent)
    rng = random.Random(seed)
    weights = operator_weights(parent, references)
    for _ in range(20):
        child, operator = mutate(spec, rng, weights)
        if child.model_dump_json() not in avoid:
            break
    explores = (OPERATORS[operator].__doc__ or operator).strip().splitlines()[0]
    insight = parent.analysis.synthesis.strip().splitlines()[0] if parent.analysis.synthesis.strip() else ""
    motivation = (
        f"Mutation `{operator}` of {parent.name or parent.proposal.name} (from {origin}). {explores}\n\n"
        f"Parent: {spec.summary()}\nChild: {child.summary()}"
        + (f"\n\nThe parent's analysis concluded: {insight}" if insight else "")
    )
    return Draft(_name(parent.name or parent.proposal.name, operator, seed), motivation, child, operator)


# Safe settings, by what the error says went wrong. Each is a small, local change.
def safe_spec(spec: ArchitectureSpec, error: str) -> tuple[ArchitectureSpec, str]:
    text = error.lower()
    mixers = list(spec.mixers)
    if "nan" in text or "finite" in text or "overflow" in text:
        fixed = spec.model_copy(update={"output_norm": "rmsnorm"})
        fixed_mixers = [m.model_copy(update={"beta": "sigmoid"} if m.beta != "none" else {}) for m in mixers]
        summary = "normalised the output and bounded beta to (0, 1) to stop non-finite values"
    elif "shape" in text or "divide" in text or "expected [" in text:
        fixed = spec.model_copy(update={"key_expand": 1.0, "value_expand": 1.0, "head_multiplier": 1})
        fixed_mixers = mixers
        summary = "reset the expand ratios and head multiplier so every width divides by the heads"
    else:
        fixed = spec.model_copy(update={"conv_sizes": (4,), "output_gate": "none"})
        fixed_mixers = mixers
        summary = "reset the convolution and output gate to the baseline's settings"
    candidate = fixed.model_copy(
        update={"mixer": fixed_mixers[0], "secondary": fixed_mixers[1] if len(fixed_mixers) > 1 else None}
    )
    return ArchitectureSpec.model_validate(candidate.model_dump()), summary


def deterministic_repair(spec_json: str, error: str) -> tuple[str, str, str]:
    """(source, spec_json, summary) for a DSL candidate; FailedPrecondition without a spec."""
    if not spec_json:
        raise FailedPrecondition(
            "no LLM is configured (ASIARCH_LLM_BACKEND) and the candidate has no DSL spec: "
            "free-form code can only be repaired by an LLM"
        )
    spec = load_spec(spec_json, "spec_json")
    fixed, summary = safe_spec(spec, error)
    return render(fixed), fixed.model_dump_json(), summary
