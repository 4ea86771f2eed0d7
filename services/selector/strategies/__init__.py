"""Parent-selection strategies and the one entry point that runs them.

`select_parents` is a pure function: the answer depends only on its
arguments, and every random draw comes from one `random.Random(seed)` created
per call, consumed in a fixed order (the strategy's draws, then each parent's
references in the order the parents are reported). So a run can be replayed
from its logged request, and the service needs no state.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from asiarch.common.errors import InvalidArgument
from asiarch.selector.population import MAX_PARENTS, Candidate, Options, Population, validate_options
from asiarch.selector.strategies import asi_arch, hgm, lexicase, pareto, random_control, uct
from asiarch.selector.strategies._references import pick_references
from asiarch.selector.strategies._types import Choice, NextAction, Selection, Strategy, StrategyInfo
from asiarch.selector.work import checkpoint

__all__ = [
    "Choice",
    "NextAction",
    "Selection",
    "StrategyInfo",
    "list_strategies",
    "select_parents",
]

_STRATEGIES: dict[str, Strategy] = {
    s.info.name: s
    for s in (
        asi_arch.STRATEGY,
        hgm.STRATEGY,
        lexicase.STRATEGY,
        pareto.STRATEGY,
        random_control.STRATEGY,
        uct.STRATEGY,
    )
}


def list_strategies() -> list[StrategyInfo]:
    """Every strategy, sorted by name."""
    return [_STRATEGIES[name].info for name in sorted(_STRATEGIES)]


def select_parents(
    strategy: str, candidates: Sequence[Candidate], k: int, seed: int, options: Options
) -> Selection:
    """Choose k distinct parents from candidates with the named strategy, each with references.

    Validation comes first and in a fixed order (strategy name, candidates,
    options, k), so a request with several mistakes always gets the same
    message. Raises InvalidArgument for any bad input.
    """
    chosen = _STRATEGIES.get(strategy)
    if chosen is None:
        raise InvalidArgument(
            f"unknown strategy {strategy!r}; valid strategies: {', '.join(sorted(_STRATEGIES))}"
        )
    population = Population(candidates)
    checkpoint()  # validating thousands of candidates takes a while; stop here if the call has ended
    validate_options(options)
    eligible = len(population.eligible())
    if eligible == 0:
        raise InvalidArgument(f"no candidate can be a parent: all {len(population)} are reference_only")
    if k > MAX_PARENTS:
        raise InvalidArgument(f"k must be at most {MAX_PARENTS} (parents per call), got {k}")
    if not 1 <= k <= eligible:
        raise InvalidArgument(
            f"k must be between 1 and {eligible} (the candidates that are not reference_only), got {k}"
        )

    rng = random.Random(seed)
    outcome = chosen.select(population, k, rng, options)
    # Strategies are ours, but a broken invariant must not reach a client silently.
    parent_ids = [pick.candidate.id for pick in outcome.picks]
    if len(parent_ids) != k or len(set(parent_ids)) != k:
        raise AssertionError(f"{strategy} returned parents {parent_ids} for k = {k}")
    choices = tuple(
        Choice(
            parent_id=pick.candidate.id,
            reference_ids=pick_references(population, pick.candidate.id, rng, options),
            score=pick.score,
            reason=pick.reason,
        )
        for pick in outcome.picks
    )
    return Selection(
        strategy=strategy,
        choices=choices,
        next_action=outcome.next_action,
        next_action_reason=outcome.next_action_reason,
    )
