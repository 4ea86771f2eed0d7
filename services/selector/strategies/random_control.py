"""random: the control strategy, parents drawn uniformly from every selectable candidate.

A search strategy is only worth its machinery if it beats picking parents
blindly from the same population with the same budget (the baseline
comparison of NAS practice: Li & Talwalkar 2019, "Random Search and
Reproducibility for Neural Architecture Search", arXiv 1902.07638). Here the k
parents are drawn uniformly without replacement from all eligible (not
reference_only) candidates, whatever their fitness or lineage, with the
request's RNG; references are picked as for every other strategy. The choices
are reported in the order they were drawn; score = fitness (information only:
it played no part in the draw).
"""

from __future__ import annotations

import random

from asiarch.selector.population import Options, Population
from asiarch.selector.strategies._types import Outcome, Pick, Strategy, StrategyInfo


def select(population: Population, k: int, rng: random.Random, options: Options) -> Outcome:
    eligible = population.eligible()
    drawn = rng.sample(eligible, k)
    reason = f"uniform draw from all {len(eligible)} selectable candidates (random control)"
    return Outcome(picks=tuple(Pick(candidate=c, score=c.fitness, reason=reason) for c in drawn))


STRATEGY = Strategy(
    info=StrategyInfo(
        name="random",
        description="Control: parents drawn uniformly from every selectable candidate, fitness ignored.",
        source="random-search control of NAS practice; Li & Talwalkar 2019, arXiv 1902.07638",
        options=("parent_pool", "reference_pool_end", "references"),
    ),
    select=select,
)
