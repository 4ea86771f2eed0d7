"""asi-arch: ASI-Arch's own parent sampling, uniform over the top of the leaderboard.

Source: GAIR-NLP/ASI-Arch (Liu et al. 2025, "AlphaGo Moment for Model
Architecture Discovery", arXiv 2507.18074). Its pipeline draws the parent with
`candidate_sample_from_range(1, 10, 1)`, one experiment uniformly at random
from fitness ranks 1-10, and the references with `(11, 50, 4)`.

Here the k parents are drawn uniformly without replacement from the eligible
(not reference_only) candidates ranked 1..parent_pool by fitness (default 10).
If k exceeds parent_pool the pool grows to k, since k distinct parents must
come from somewhere and the next-best ranks are the natural extension; the
pool also shrinks to the number of eligible candidates when there are fewer.
The choices are reported best-ranked first; score = fitness.
"""

from __future__ import annotations

import random

from asiarch.selector.population import DEFAULT_PARENT_POOL, Options, Population
from asiarch.selector.strategies._types import Outcome, Pick, Strategy, StrategyInfo


def select(population: Population, k: int, rng: random.Random, options: Options) -> Outcome:
    ranked = population.ranked()
    parent_pool = options.parent_pool if options.parent_pool is not None else DEFAULT_PARENT_POOL
    pool_end = max(parent_pool, k)
    pool = ranked[:pool_end]
    drawn = rng.sample(range(len(pool)), k)
    picks = tuple(
        Pick(
            candidate=pool[i],
            score=pool[i].fitness,
            reason=(
                f"uniform draw from fitness ranks 1-{pool_end} (pool of {len(pool)}); "
                f"rank {i + 1}, fitness {pool[i].fitness:.4g}"
            ),
        )
        for i in sorted(drawn)
    )
    return Outcome(picks=picks)


STRATEGY = Strategy(
    info=StrategyInfo(
        name="asi-arch",
        description="Uniform draw from fitness ranks 1-10, as ASI-Arch's pipeline samples its parents.",
        source=(
            "GAIR-NLP/ASI-Arch, candidate_sample_from_range(1, 10, 1) and (11, 50, 4); "
            "Liu et al. 2025, arXiv 2507.18074"
        ),
        options=("parent_pool", "reference_pool_end", "references"),
    ),
    select=select,
)
