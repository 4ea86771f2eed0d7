"""lexicase and pareto: never a dominated parent while a dominating one is available."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asiarch.common.errors import InvalidArgument
from asiarch.selector.population import Candidate, CandidateMetrics, Options, Population
from asiarch.selector.strategies import select_parents
from asiarch.selector.strategies._objectives import build_objectives, dominates, non_dominated, pareto_fronts


def cand(cid: str, metrics: CandidateMetrics, reference_only: bool = False) -> Candidate:
    return Candidate(id=cid, parent_id=None, fitness=1.0, metrics=metrics, reference_only=reference_only)


def metrics(loss: float | None = None, tps: float | None = None, **benchmarks: float) -> CandidateMetrics:
    return CandidateMetrics(val_loss=loss, tokens_per_second=tps, benchmarks=benchmarks)


def oriented(c: Candidate) -> tuple[float, ...]:
    """The test's own reading of the objectives, higher is better, missing = worst."""
    m = c.metrics
    worst = -math.inf
    return (
        worst if m.val_loss is None else -m.val_loss,
        worst if m.tokens_per_second is None else m.tokens_per_second,
        m.benchmarks.get("mqar", worst),
        worst if m.parameters is None else -m.parameters,
    )


def is_dominated(c: Candidate, others: list[Candidate]) -> bool:
    mine = oriented(c)
    for other in others:
        theirs = oriented(other)
        if all(t >= v for t, v in zip(theirs, mine, strict=True)) and theirs != mine:
            return True
    return False


def mixed_population(seed: int) -> list[Candidate]:
    """Random trade-offs plus, for each, a strictly worse copy, and some missing values."""
    rng = random.Random(seed)
    pop: list[Candidate] = []
    for i in range(8):
        loss, tps, acc, params = rng.uniform(2, 3), rng.uniform(500, 1500), rng.random(), rng.randint(10, 99)
        good = CandidateMetrics(
            val_loss=loss, tokens_per_second=tps, benchmarks={"mqar": acc}, parameters=params
        )
        worse = CandidateMetrics(
            val_loss=loss + 0.01, tokens_per_second=tps - 1, benchmarks={"mqar": acc}, parameters=params + 1
        )
        missing = CandidateMetrics(tokens_per_second=tps, benchmarks={"mqar": acc}, parameters=params)
        pop += [cand(f"g{i}", good), cand(f"w{i}", worse), cand(f"m{i}", missing)]
    return pop


@pytest.mark.parametrize("strategy", ["lexicase", "pareto"])
def test_never_picks_a_dominated_candidate(strategy: str) -> None:
    for population_seed in range(5):
        pop = mixed_population(population_seed)
        dominated = {c.id for c in pop if is_dominated(c, pop)}
        assert {f"w{i}" for i in range(8)} | {f"m{i}" for i in range(8)} <= dominated
        picked = Counter(
            select_parents(strategy, pop, 1, seed, Options()).choices[0].parent_id for seed in range(60)
        )
        assert not set(picked) & dominated
        assert len(picked) > 1  # still a random choice among the non-dominated


def test_lexicase_on_one_objective_takes_the_best() -> None:
    pop = [cand("a", metrics(loss=2.5)), cand("b", metrics(loss=2.1)), cand("c", metrics(loss=2.2))]
    for seed in range(20):
        assert (
            select_parents("lexicase", pop, 1, seed, Options(objectives=("loss",))).choices[0].parent_id
            == "b"
        )
    # k picks in turn: each removes its winner from the next round.
    selection = select_parents("lexicase", pop, 3, 0, Options(objectives=("loss",)))
    assert [c.parent_id for c in selection.choices] == ["b", "c", "a"]


def test_lexicase_epsilon_lets_near_ties_through() -> None:
    pop = [
        cand("a", metrics(loss=2.00, tps=100)),
        cand("b", metrics(loss=2.01, tps=1000)),  # nearly as good a loss, far faster
        cand("c", metrics(loss=3.00, tps=1100)),
    ]
    exact = Counter(
        select_parents("lexicase", pop, 1, s, Options(lexicase_epsilon=0.0)).choices[0].parent_id
        for s in range(60)
    )
    assert set(exact) == {"a", "c"}  # the first objective decides alone
    loose = Counter(
        select_parents(
            "lexicase", pop, 1, s, Options(lexicase_epsilon=0.05, objectives=("loss", "throughput"))
        )
        .choices[0]
        .parent_id
        for s in range(60)
    )
    assert set(loose) == {"b", "c"}  # loss first keeps a and b; throughput then picks b


def test_lexicase_reason_gives_the_objective_order() -> None:
    pop = [cand("a", metrics(loss=2.0, tps=100)), cand("b", metrics(loss=2.5, tps=900))]
    choice = select_parents("lexicase", pop, 1, 0, Options(lexicase_epsilon=0.0)).choices[0]
    expected = "loss" if choice.parent_id == "a" else "throughput"
    assert f"objective order {expected}" in choice.reason
    assert choice.score == 1.0  # decided on the first objective


def test_pareto_takes_the_whole_front_before_the_next() -> None:
    pop = [
        cand("f1", metrics(loss=2.0, tps=100)),
        cand("f2", metrics(loss=2.1, tps=200)),
        cand("f3", metrics(loss=2.2, tps=300)),
        cand("s1", metrics(loss=2.1, tps=100)),  # front 2
        cand("s2", metrics(loss=2.3, tps=250)),  # front 2
        cand("t1", metrics(loss=3.0, tps=50)),  # front 3, dominated by s1
    ]
    second: Counter[str] = Counter()
    for seed in range(40):
        selection = select_parents("pareto", pop, 4, seed, Options())
        ids = [c.parent_id for c in selection.choices]
        assert set(ids[:3]) == {"f1", "f2", "f3"}
        assert [c.score for c in selection.choices] == [1.0, 1.0, 1.0, 2.0]
        assert "front 1 (3 candidates)" in selection.choices[0].reason
        assert "front 2 (2 candidates)" in selection.choices[3].reason
        second[ids[3]] += 1
    assert set(second) == {"s1", "s2"}
    assert [c.score for c in select_parents("pareto", pop, 6, 0, Options()).choices][-1] == 3.0


@pytest.mark.parametrize("strategy", ["lexicase", "pareto"])
def test_reference_only_candidates_are_not_parents_nor_objective_sources(strategy: str) -> None:
    pop = [
        cand("ref", metrics(loss=1.0, tps=5000), reference_only=True),  # dominates everyone
        cand("a", metrics(loss=2.0)),
        cand("b", metrics(loss=2.5)),
    ]
    for seed in range(20):
        assert select_parents(strategy, pop, 1, seed, Options()).choices[0].parent_id == "a"
    # Only the reference_only candidate reports throughput: nothing left to compare on.
    with pytest.raises(InvalidArgument) as caught:
        select_parents(strategy, pop, 1, 0, Options(objectives=("throughput",)))
    assert caught.value.message == (
        f"{strategy} has nothing to compare: no candidate that is not reference_only "
        "reports any of the objectives (throughput)"
    )


@pytest.mark.parametrize("strategy", ["lexicase", "pareto"])
def test_rejects_a_population_without_any_requested_objective(strategy: str) -> None:
    pop = [cand("a", CandidateMetrics()), cand("b", CandidateMetrics())]
    with pytest.raises(InvalidArgument) as caught:
        select_parents(strategy, pop, 1, 0, Options())
    assert caught.value.message == (
        f"{strategy} has nothing to compare: no candidate that is not reference_only "
        "reports any of the objectives (loss, benchmarks, throughput, parameters)"
    )


def test_each_benchmark_is_its_own_objective() -> None:
    # Neither dominates the other when benchmarks are kept apart; averaged, b would win.
    pop = [cand("a", metrics(mqar=0.9, copy=0.1)), cand("b", metrics(mqar=0.6, copy=0.6))]
    picked = {
        select_parents("pareto", pop, 1, s, Options(objectives=("benchmarks",))).choices[0].parent_id
        for s in range(30)
    }
    assert picked == {"a", "b"}
    assert (
        "benchmark:copy, benchmark:mqar" in select_parents("pareto", pop, 1, 0, Options()).choices[0].reason
    )


def test_fast_front_matches_brute_force() -> None:
    # non_dominated skips comparisons; check it against the definition on ties and missing values.
    rng = random.Random(0)
    for _ in range(200):
        pop = [
            cand(
                str(i),
                CandidateMetrics(
                    val_loss=rng.choice([None, 1.0, 2.0, 3.0]),
                    tokens_per_second=rng.choice([None, 1.0, 2.0]),
                    parameters=rng.choice([1, 2, 3]),
                ),
            )
            for i in range(rng.randint(1, 25))
        ]
        objectives = build_objectives(Population(pop), (), "test")
        brute = [
            c for c in pop if not any(dominates(objectives.vector(o), objectives.vector(c)) for o in pop)
        ]
        assert non_dominated(pop, objectives) == brute


def peeled_by_definition(vectors: list[tuple[float, ...]]) -> list[list[int]]:
    """Fronts straight from the definition: what no remaining vector dominates, removed in turn."""
    fronts, remaining = [], list(range(len(vectors)))
    while remaining:
        front = [i for i in remaining if not any(dominates(vectors[j], vectors[i]) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


# Few distinct values, so ties, equal vectors and missing (-inf) values are common.
VALUES = st.sampled_from([-math.inf, -1.0, 0.0, 1.0, 2.5])


@given(st.integers(1, 5).flatmap(lambda d: st.lists(st.tuples(*[VALUES] * d), max_size=40)))
def test_every_front_matches_the_definition(vectors: list[tuple[float, ...]]) -> None:
    assert list(pareto_fronts(vectors)) == peeled_by_definition(vectors)
