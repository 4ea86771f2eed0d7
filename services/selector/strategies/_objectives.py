"""Objective vectors for the multi-objective strategies (lexicase, pareto).

Every objective is turned "higher is better" here (loss and parameters are
negated), so the strategies compare numbers one way only. A candidate that
does not report an objective gets -inf for it: an unmeasured model should never
win on that objective, but it must still be comparable to the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asiarch.common.errors import InvalidArgument
from asiarch.selector.population import OBJECTIVES, Candidate, CandidateMetrics, Population

WORST = -math.inf


@dataclass(frozen=True)
class Objectives:
    """Oriented objective values of the eligible candidates."""

    names: tuple[str, ...]  # e.g. ("loss", "benchmark:mqar", "throughput")
    vectors: dict[str, tuple[float, ...]]  # candidate id -> one value per name, higher is better

    def vector(self, candidate: Candidate) -> tuple[float, ...]:
        return self.vectors[candidate.id]


def _negated(value: float | None) -> float:
    return WORST if value is None else -float(value)


def _plain(value: float | None) -> float:
    return WORST if value is None else float(value)


_Extractor = Callable[[CandidateMetrics], float]


def _extractors(requested: Sequence[str], population: Population) -> list[tuple[str, _Extractor]]:
    extractors: list[tuple[str, _Extractor]] = []
    for name in dict.fromkeys(requested or OBJECTIVES):  # dedupe, keep order
        if name == "loss":
            extractors.append(("loss", lambda m: _negated(m.val_loss)))
        elif name == "throughput":
            extractors.append(("throughput", lambda m: _plain(m.tokens_per_second)))
        elif name == "parameters":
            extractors.append(("parameters", lambda m: _negated(m.parameters)))
        elif name == "benchmarks":
            # One objective per benchmark: a model good at recall and bad at
            # reasoning is a different trade-off, not an average.
            names = sorted({b for c in population.candidates for b in c.metrics.benchmarks})
            for bench in names:
                extractors.append((f"benchmark:{bench}", lambda m, b=bench: _plain(m.benchmarks.get(b))))
        else:  # validate_options has already rejected unknown names
            raise AssertionError(f"unknown objective {name!r}")
    return extractors


def build_objectives(population: Population, requested: Sequence[str], strategy: str) -> Objectives:
    """Objective vectors of the eligible candidates over the requested objectives.

    Objectives no eligible candidate reports are dropped: they would tie
    everyone and only slow the strategies down. If none is left there is
    nothing to select on, which is the caller's mistake.
    """
    eligible = population.eligible()
    kept: list[tuple[str, _Extractor]] = []
    for name, extract in _extractors(requested, population):
        if any(extract(c.metrics) != WORST for c in eligible):
            kept.append((name, extract))
    if not kept:
        asked = ", ".join(dict.fromkeys(requested or OBJECTIVES))
        raise InvalidArgument(
            f"{strategy} has nothing to compare: no candidate that is not reference_only "
            f"reports any of the objectives ({asked})"
        )
    vectors = {c.id: tuple(extract(c.metrics) for _, extract in kept) for c in eligible}
    return Objectives(names=tuple(name for name, _ in kept), vectors=vectors)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a dominates b: at least as good on every objective and better on one (higher is better)."""
    better = False
    for x, y in zip(a, b, strict=True):
        if x < y:
            return False
        if x > y:
            better = True
    return better


def non_dominated(candidates: Sequence[Candidate], objectives: Objectives) -> list[Candidate]:
    """The candidates no other candidate in the sequence dominates, in their given order.

    Visiting candidates in descending lexicographic order of their vectors
    means a dominator is always visited first, and whatever dominates a
    non-front candidate is itself dominated by (or is) a front member, so each
    candidate needs comparing with the front found so far only: O(n * front)
    instead of O(n^2), which matters for populations of thousands.
    """
    order = sorted(range(len(candidates)), key=lambda i: objectives.vector(candidates[i]), reverse=True)
    front: list[int] = []
    for i in order:
        vector = objectives.vector(candidates[i])
        if not any(dominates(objectives.vector(candidates[j]), vector) for j in front):
            front.append(i)
    return [candidates[i] for i in sorted(front)]
