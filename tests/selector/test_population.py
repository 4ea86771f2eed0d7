"""Population: the lineage lookups strategies rely on, and every validation rule."""

from __future__ import annotations

import math

import pytest

from asiarch.common.errors import InvalidArgument
from asiarch.selector.population import Candidate, CandidateMetrics, Options, Population, validate_options


def cand(cid: str, fitness: float = 1.0, parent: str | None = None, **kwargs: object) -> Candidate:
    return Candidate(id=cid, parent_id=parent, fitness=fitness, **kwargs)  # type: ignore[arg-type]


def tree() -> Population:
    # r1 -> a -> c, r1 -> b (reference_only); r2 alone; "" parent is a root too.
    return Population(
        [
            cand("r1", 1.0),
            cand("a", 2.0, "r1"),
            cand("b", 3.0, "r1", reference_only=True),
            cand("c", 2.0, "a"),
            cand("r2", 0.5, ""),
        ]
    )


def test_lookups_follow_the_lineage() -> None:
    pop = tree()
    assert [c.id for c in pop.candidates] == ["r1", "a", "b", "c", "r2"]
    assert pop.get("c").fitness == 2.0
    assert [c.id for c in pop.children("r1")] == ["a", "b"]
    assert pop.children("c") == ()
    assert [c.id for c in pop.clade("r1")] == ["r1", "a", "c", "b"]
    assert [c.id for c in pop.clade("a")] == ["a", "c"]
    assert pop.parent("c") == pop.get("a")
    assert pop.parent("r2") is None  # empty parent_id means root
    assert len(pop) == 5
    assert "a" in pop
    assert "zz" not in pop


def test_eligible_and_ranking_are_deterministic() -> None:
    pop = tree()
    assert [c.id for c in pop.eligible()] == ["r1", "a", "c", "r2"]
    # a and c tie at 2.0: input order decides; b is reference_only.
    assert [c.id for c in pop.ranked()] == ["a", "c", "r1", "r2"]
    assert [c.id for c in pop.ranked_all()] == ["b", "a", "c", "r1", "r2"]


def test_clade_sums_match_walking_each_clade() -> None:
    pop = tree()
    sums = pop.clade_sums(lambda c: c.fitness)
    for candidate in pop.candidates:
        assert sums[candidate.id] == pytest.approx(sum(c.fitness for c in pop.clade(candidate.id)))
    assert sums["r1"] == pytest.approx(8.0)


def test_long_chain_is_handled_without_recursion() -> None:
    chain = [cand("n0")] + [cand(f"n{i}", parent=f"n{i - 1}") for i in range(1, 5000)]
    pop = Population(chain)
    assert pop.clade_sums(lambda c: 1.0)["n0"] == 5000
    assert len(pop.clade("n0")) == 5000


def test_benchmarks_are_a_read_only_copy() -> None:
    scores = {"mqar": 0.5}
    metrics = CandidateMetrics(benchmarks=scores)
    scores["mqar"] = 0.9
    assert metrics.benchmarks["mqar"] == 0.5
    with pytest.raises(TypeError):
        metrics.benchmarks["mqar"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([], "candidates must not be empty"),
        ([cand("a"), cand("")], "candidates[1]: id must not be empty"),
        (
            [cand("x"), cand("y"), cand("x")],
            "duplicate candidate id 'x' at candidates[0] and candidates[2]",
        ),
        ([cand("a"), cand("abc", math.nan)], "candidates[1] (id 'abc'): fitness is NaN"),
        ([cand("a", math.inf)], "candidates[0] (id 'a'): fitness is inf"),
        (
            [cand("a"), cand("b", metrics=CandidateMetrics(val_loss=math.inf))],
            "candidates[1] (id 'b'): metrics.val_loss is inf",
        ),
        (
            [cand("a", metrics=CandidateMetrics(tokens_per_second=-math.inf))],
            "candidates[0] (id 'a'): metrics.tokens_per_second is -inf",
        ),
        (
            [cand("a", metrics=CandidateMetrics(benchmarks={"mqar": math.nan}))],
            "candidates[0] (id 'a'): metrics.benchmarks['mqar'] is NaN",
        ),
        (
            [cand("a", evaluations=-1)],
            "candidates[0] (id 'a'): evaluations must be >= 0, got -1",
        ),
        (
            [cand("a"), cand("b", parent="a"), cand("c", parent="zz")],
            "candidates[2] (id 'c'): parent_id 'zz' is not among the candidates",
        ),
        ([cand("a"), cand("c", parent="c")], "candidates[1] (id 'c'): parent_id 'c' is its own id"),
        ([cand("a", parent="b"), cand("b", parent="a")], "lineage cycle: a -> b -> a"),
        (
            # A tail leading into the cycle is not part of the reported cycle.
            [cand("t", parent="x"), cand("x", parent="y"), cand("y", parent="z"), cand("z", parent="x")],
            "lineage cycle: x -> y -> z -> x",
        ),
    ],
)
def test_invalid_candidates_are_rejected_with_a_precise_message(
    candidates: list[Candidate], message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Population(candidates)
    assert caught.value.message == message


def test_integer_and_absent_metrics_are_fine() -> None:
    pop = Population([cand("a", metrics=CandidateMetrics(parameters=10**30)), cand("b")])
    assert pop.get("a").metrics.parameters == 10**30


def test_valid_options_pass() -> None:
    validate_options(Options())
    validate_options(
        Options(
            parent_pool=1,
            reference_pool_end=1,
            references=50,
            exploration=0.0,
            success_threshold=-3.0,
            expansion_exponent=1.0,
            lexicase_epsilon=0.0,
            objectives=("loss", "benchmarks", "throughput", "parameters"),
        )
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(parent_pool=0), "options.parent_pool must be >= 1, got 0"),
        (Options(reference_pool_end=5), "options.reference_pool_end must be >= parent_pool (10), got 5"),
        (
            Options(parent_pool=20, reference_pool_end=15),
            "options.reference_pool_end must be >= parent_pool (20), got 15",
        ),
        (Options(references=51), "options.references must be between 0 and 50, got 51"),
        (Options(references=-1), "options.references must be between 0 and 50, got -1"),
        (Options(exploration=-1.0), "options.exploration must be >= 0, got -1"),
        (Options(exploration=math.nan), "options.exploration must be finite, got NaN"),
        (Options(success_threshold=math.inf), "options.success_threshold must be finite, got inf"),
        (Options(expansion_exponent=0.0), "options.expansion_exponent must be in (0, 1], got 0"),
        (Options(expansion_exponent=1.5), "options.expansion_exponent must be in (0, 1], got 1.5"),
        (Options(lexicase_epsilon=-0.1), "options.lexicase_epsilon must be >= 0, got -0.1"),
        (
            Options(objectives=("loss", "speed")),
            "options.objectives[1]: unknown objective 'speed'; "
            "valid objectives: benchmarks, loss, parameters, throughput",
        ),
    ],
)
def test_invalid_options_are_rejected_with_a_precise_message(options: Options, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_options(options)
    assert caught.value.message == message
