"""lexicase: epsilon-lexicase selection over the measured objectives.

Sources: Spector 2012, "Assessment of problem modality by differential
performance of lexicase selection in genetic programming"; La Cava, Spector &
Danai 2016, "Epsilon-lexicase selection for regression" (GECCO); used for
parent selection by the "Transformer Evolution LLM" seed project.

Objectives (options.objectives, default all): loss (val_loss, lower is
better), benchmarks (one objective per benchmark name, higher), throughput
(tokens_per_second, higher), parameters (fewer). A candidate missing a value
is worst on that objective; objectives no eligible candidate reports are
dropped, and a request left with none is rejected.

Each of the k picks starts from the eligible candidates not picked yet,
shuffles the objective order with the RNG and, objective by objective, keeps
the candidates within epsilon of the best survivor. Epsilon is
options.lexicase_epsilon, or by default the median absolute deviation of that
objective over the current survivors (missing values ignored): the "dynamic"
variant, which adapts the tolerance to how close the remaining contenders are.
Filtering stops once one candidate is left. Among the survivors only those no
other survivor Pareto-dominates are kept, and one of them is picked uniformly;
so a dominated candidate is never chosen over one that dominates it (whatever
survives a filter, anything dominating it survives too). Score = the number of
objectives applied before the pick was decided.
"""

from __future__ import annotations

import random
import statistics

from asiarch.selector.population import Candidate, Options, Population
from asiarch.selector.strategies._objectives import WORST, Objectives, build_objectives, non_dominated
from asiarch.selector.strategies._types import Outcome, Pick, Strategy, StrategyInfo
from asiarch.selector.work import checkpoint


def median_absolute_deviation(values: list[float]) -> float:
    """MAD of the finite values; 0 when there are none."""
    finite = [v for v in values if v != WORST]
    if not finite:
        return 0.0
    centre = statistics.median(finite)
    return statistics.median(abs(v - centre) for v in finite)


def _pick_one(
    pool: list[Candidate], objectives: Objectives, rng: random.Random, epsilon: float | None
) -> Pick:
    order = list(range(len(objectives.names)))
    rng.shuffle(order)
    survivors = pool
    used = 0
    for objective in order:
        if len(survivors) == 1:
            break
        used += 1
        values = [objectives.vector(c)[objective] for c in survivors]
        best = max(values)
        if best == WORST:
            continue  # nobody left reports it: it cannot separate them
        tolerance = epsilon if epsilon is not None else median_absolute_deviation(values)
        survivors = [c for c, v in zip(survivors, values, strict=True) if v >= best - tolerance]

    front = non_dominated(survivors, objectives)
    chosen = front[rng.randrange(len(front))]
    names = ", ".join(objectives.names[i] for i in order[:used]) or "none needed"
    reason = (
        f"epsilon-lexicase over {len(pool)} candidates with objective order {names}: "
        f"{len(survivors)} survived, {len(front)} of them non-dominated, picked uniformly"
    )
    return Pick(candidate=chosen, score=float(used), reason=reason)


def select(population: Population, k: int, rng: random.Random, options: Options) -> Outcome:
    objectives = build_objectives(population, options.objectives, "lexicase")
    pool = list(population.eligible())
    picks: list[Pick] = []
    for _ in range(k):
        checkpoint()
        pick = _pick_one(pool, objectives, rng, options.lexicase_epsilon)
        picks.append(pick)
        pool = [c for c in pool if c.id != pick.candidate.id]
    return Outcome(picks=tuple(picks))


STRATEGY = Strategy(
    info=StrategyInfo(
        name="lexicase",
        description="Epsilon-lexicase over loss, benchmarks, throughput and parameters in random order.",
        source=(
            "Spector 2012 (lexicase selection); La Cava, Spector & Danai 2016, "
            "'Epsilon-lexicase selection for regression'; seed project 'Transformer Evolution LLM'"
        ),
        options=("objectives", "lexicase_epsilon", "parent_pool", "reference_pool_end", "references"),
    ),
    select=select,
)
