"""Large selector requests for the load test and the timing script (tests/selector/time_selection.py).

`non_dominated_request` builds the request issue 16 timed: n candidates none of which dominates
another, so the whole population is the Pareto front, the worst case of a front computation.
"""

from __future__ import annotations

import random

from asiarch.selector.population import MAX_BENCHMARKS, MAX_CANDIDATES, MAX_PARENTS
from asiarch.v1 import common_pb2, selector_pb2


def non_dominated_candidates(n: int, benchmarks: int = 0, seed: int = 0) -> list[selector_pb2.Candidate]:
    """n candidates with 2 + benchmarks objectives, mutually non-dominated.

    With no benchmark, loss and throughput rise together (a lower loss always costs throughput).
    With benchmarks, each candidate's oriented objectives (-loss, throughput, every score) are a
    random point with a fixed sum, and of two such points neither can be better everywhere.
    """
    rng = random.Random(seed)
    candidates = []
    for i in range(n):
        metrics = common_pb2.Metrics()
        if benchmarks == 0:
            metrics.val_loss = 1.0 + i / n
            metrics.tokens_per_second = 1000.0 + i
        else:
            weights = [rng.random() for _ in range(2 + benchmarks)]
            total = sum(weights)
            share = [w / total for w in weights]
            metrics.val_loss = 1.0 - share[0]
            metrics.tokens_per_second = share[1]
            for b in range(benchmarks):
                metrics.benchmarks.add(name=f"bench{b}", score=share[2 + b])
        candidates.append(selector_pb2.Candidate(id=f"c{i}", fitness=1.0, metrics=metrics))
    return candidates


def non_dominated_request(
    n: int, benchmarks: int = 0, k: int = 1, strategy: str = "pareto"
) -> selector_pb2.SelectParentsRequest:
    return selector_pb2.SelectParentsRequest(
        strategy=strategy, candidates=non_dominated_candidates(n, benchmarks), k=k, seed=1
    )


def slowest_allowed_request() -> selector_pb2.SelectParentsRequest:
    """The most work one call may ask for: every bound at its limit, lexicase (seconds on a small machine)."""
    return non_dominated_request(MAX_CANDIDATES, MAX_BENCHMARKS, k=MAX_PARENTS, strategy="lexicase")
