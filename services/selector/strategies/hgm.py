"""hgm: Huxley-Gödel Machine selection by clade metaproductivity.

Source: Wang et al. 2025, "Huxley-Gödel Machine: Human-Level Coding Agent
Development by an Approximation of the Optimal Self-Improving Machine" (arXiv
2510.21614), as adapted to architecture search in NAS-HGM.

A node is worth expanding when its whole clade (the node and every
descendant, reference_only ones included) has produced good results, not just
the node itself: that is the paper's clade-metaproductivity estimate. A clade
member with fitness above the success threshold is a success, any other a
failure. The threshold is options.success_threshold when given; by default
it is the 65th percentile of all candidates' fitness (linearly
interpolated), clipped to [0.2, 0.8] as in NAS-HGM -- but NAS-HGM's scores
lie in [0, 1] and ours do not (ASI-Arch's composite lies in [0, 3]), so the
clip is applied to the observed range: [lo + 0.2 (hi - lo), lo + 0.8 (hi - lo)]
with lo, hi the lowest and highest fitness. On [0, 1] populations spanning
the range this is NAS-HGM's rule; on any other scale it keeps its intent
(neither nearly every node nor nearly none counts as a success), and scaling
every fitness by a positive constant leaves the choice unchanged.

Each eligible node gets theta ~ Beta(1 + S, 1 + F) (Thompson sampling), drawn
in input order from the request's RNG; the k largest thetas
win, best first. Sampling rather than ranking keeps weaker clades in play in
proportion to how likely they are to be the best.

The paper's expand-or-evaluate rule is returned as advice: with evals the sum
of max(1, evaluations) over all candidates and nodes their number, EXPAND
while evals^alpha >= nodes (alpha = options.expansion_exponent, default 0.6),
else REEVALUATE, so the tree grows only as fast as the evidence about it.
"""

from __future__ import annotations

import math
import random

from asiarch.selector.population import Options, Population
from asiarch.selector.strategies._types import NextAction, Outcome, Pick, Strategy, StrategyInfo

DEFAULT_EXPANSION_EXPONENT = 0.6
THRESHOLD_PERCENTILE = 0.65
THRESHOLD_RANGE = (0.2, 0.8)  # fractions of the observed fitness range


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of a non-empty list."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def success_threshold(population: Population, options: Options) -> float:
    if options.success_threshold is not None:
        return options.success_threshold
    fitness = [c.fitness for c in population.candidates]
    value = percentile(fitness, THRESHOLD_PERCENTILE)
    lo, hi = min(fitness), max(fitness)
    low, high = (lo + bound * (hi - lo) for bound in THRESHOLD_RANGE)
    return min(max(value, low), high)


def next_action(population: Population, options: Options) -> tuple[NextAction, str]:
    alpha = options.expansion_exponent
    if alpha is None:
        alpha = DEFAULT_EXPANSION_EXPONENT
    evals = sum(max(1, c.evaluations) for c in population.candidates)
    nodes = len(population)
    budget = evals**alpha
    if budget >= nodes:
        return NextAction.EXPAND, f"{evals} evaluations^{alpha:g} = {budget:.2f} >= {nodes} nodes: expand"
    return NextAction.REEVALUATE, f"{evals} evaluations^{alpha:g} = {budget:.2f} < {nodes} nodes: re-evaluate"


def select(population: Population, k: int, rng: random.Random, options: Options) -> Outcome:
    threshold = success_threshold(population, options)
    successes = population.clade_sums(lambda node: 1.0 if node.fitness > threshold else 0.0)
    sizes = population.clade_sums(lambda node: 1.0)

    sampled: list[tuple[float, Pick]] = []
    for node in population.eligible():
        s = round(successes[node.id])
        f = round(sizes[node.id]) - s
        theta = rng.betavariate(1 + s, 1 + f)
        reason = (
            f"Thompson sample theta = {theta:.3f} from Beta(1 + {s}, 1 + {f}): {s} of its clade's "
            f"{s + f} members beat the success threshold {threshold:.4g}"
        )
        sampled.append((theta, Pick(candidate=node, score=theta, reason=reason)))

    sampled.sort(key=lambda item: -item[0])  # stable: equal thetas keep input order
    action, action_reason = next_action(population, options)
    return Outcome(
        picks=tuple(pick for _, pick in sampled[:k]), next_action=action, next_action_reason=action_reason
    )


STRATEGY = Strategy(
    info=StrategyInfo(
        name="hgm",
        description="Huxley-Gödel Machine: Thompson sampling on clade success, then expand or re-evaluate.",
        source="Wang et al. 2025, 'Huxley-Gödel Machine', arXiv 2510.21614; NAS-HGM",
        options=(
            "success_threshold",
            "expansion_exponent",
            "parent_pool",
            "reference_pool_end",
            "references",
        ),
    ),
    select=select,
)
