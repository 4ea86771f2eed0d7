"""uct: Upper Confidence bounds applied to Trees over the lineage.

Source: Kocsis & Szepesvári 2006, "Bandit based Monte-Carlo Planning" (UCB1 of
Auer et al. 2002 applied to tree nodes); the lineage plays the search tree, as
in MCTS-style architecture and program search.

For every eligible node v:
  Q(v) = mean fitness over its clade (v and all descendants, reference_only
         ones included), i.e. the MCTS back-up of every result below v;
  n(v) = its number of children (how often it has been expanded);
  N    = the number of non-root nodes (all expansions made so far);
  score(v) = Q(v) + c * sqrt(ln N / n(v)), c = options.exploration (default sqrt 2).
A node never expanded (n = 0) scores +inf, as UCB1 tries every arm once; those
come first, higher own fitness first, remaining ties in seeded random order.
With N <= 1, ln N is taken as 0 (no evidence to explore on, and ln 0 is
undefined), so visited nodes score Q. The top-k by score are returned.
"""

from __future__ import annotations

import math
import random

from asiarch.selector.population import Options, Population
from asiarch.selector.strategies._types import Outcome, Pick, Strategy, StrategyInfo

DEFAULT_EXPLORATION = math.sqrt(2)


def select(population: Population, k: int, rng: random.Random, options: Options) -> Outcome:
    c = options.exploration if options.exploration is not None else DEFAULT_EXPLORATION
    fitness_sums = population.clade_sums(lambda node: node.fitness)
    sizes = population.clade_sums(lambda node: 1.0)
    total = sum(len(population.children(node.id)) for node in population.candidates)
    log_total = math.log(total) if total > 1 else 0.0

    scored: list[tuple[float, float, float, Pick]] = []
    for node in population.eligible():
        # Drawn for every node in input order, used or not, so one node's tie
        # cannot shift the random stream that later draws (references) see.
        tie = rng.random()
        q = fitness_sums[node.id] / sizes[node.id]
        n = len(population.children(node.id))
        if n == 0:
            score = math.inf
            reason = (
                f"never expanded (n = 0), so its UCT score is +inf; own fitness {node.fitness:.4g}, "
                f"clade mean Q = {q:.4g}, N = {total}"
            )
        else:
            bonus = c * math.sqrt(log_total / n)
            score = q + bonus
            reason = (
                f"UCT {score:.4g} = Q {q:.4g} (mean fitness of {sizes[node.id]:.0f} in its clade) "
                f"+ {c:.3g} * sqrt(ln N / n) with n = {n} children, N = {total}"
            )
        scored.append((score, node.fitness, tie, Pick(candidate=node, score=score, reason=reason)))

    scored.sort(key=lambda item: (-item[0], -item[1], item[2]))
    return Outcome(picks=tuple(pick for *_, pick in scored[:k]))


STRATEGY = Strategy(
    info=StrategyInfo(
        name="uct",
        description="UCB1 on the lineage tree: clade-mean fitness plus exploration bonus, unexpanded first.",
        source="Kocsis & Szepesvári 2006, 'Bandit based Monte-Carlo Planning' (UCT); Auer et al. 2002 (UCB1)",
        options=("exploration", "parent_pool", "reference_pool_end", "references"),
    ),
    select=select,
)
