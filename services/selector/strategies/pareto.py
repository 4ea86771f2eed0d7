"""pareto: uniform choice from the Pareto front of the measured objectives.

Sources: non-dominated sorting as in Deb et al. 2002 (NSGA-II); uniform
selection from the first front as in the "Transformer Evolution LLM" seed
project.

The eligible candidates are sorted into fronts over the same objectives as
lexicase (missing values are worst; objectives nobody eligible reports are
dropped): front 1 is every candidate no other dominates, front 2 is what is
non-dominated once front 1 is removed, and so on. Parents are drawn uniformly
without replacement from front 1; if k exceeds it, all of front 1 is taken and
the draw continues in front 2, and so on, so no candidate is picked while a
candidate that dominates it is left. Uniform choice keeps every trade-off on
the front (small and fast, large and accurate) equally likely to be explored.
Score = front index (1 = the Pareto front).
"""

from __future__ import annotations

import random

from asiarch.selector.population import Options, Population
from asiarch.selector.strategies._objectives import build_objectives, pareto_fronts
from asiarch.selector.strategies._types import Outcome, Pick, Strategy, StrategyInfo


def select(population: Population, k: int, rng: random.Random, options: Options) -> Outcome:
    objectives = build_objectives(population, options.objectives, "pareto")
    eligible = population.eligible()
    picks: list[Pick] = []
    # Fronts are peeled lazily: only as many as k needs, usually one.
    fronts = pareto_fronts([objectives.vector(c) for c in eligible])
    for front_index, positions in enumerate(fronts, start=1):
        front = [eligible[i] for i in positions]
        taken = rng.sample(front, min(k - len(picks), len(front)))
        for candidate in taken:
            reason = (
                f"uniform draw from Pareto front {front_index} ({len(front)} candidates) over "
                f"{', '.join(objectives.names)}"
            )
            picks.append(Pick(candidate=candidate, score=float(front_index), reason=reason))
        if len(picks) == k:
            break
    return Outcome(picks=tuple(picks))


STRATEGY = Strategy(
    info=StrategyInfo(
        name="pareto",
        description="Uniform draw from the Pareto front of loss, benchmarks, throughput and parameters.",
        source="Deb et al. 2002 (NSGA-II non-dominated sorting); seed project 'Transformer Evolution LLM'",
        options=("objectives", "parent_pool", "reference_pool_end", "references"),
    ),
    select=select,
)
