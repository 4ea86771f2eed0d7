"""select_parents rejects every bad request with a message that says what is wrong."""

from __future__ import annotations

import math

import pytest

from asiarch.common.errors import InvalidArgument
from asiarch.selector.population import (
    MAX_BENCHMARKS,
    MAX_CANDIDATES,
    MAX_PARENTS,
    Candidate,
    CandidateMetrics,
    Options,
)
from asiarch.selector.strategies import select_parents


def cand(cid: str, fitness: float = 1.0, parent: str | None = None, **kwargs: object) -> Candidate:
    return Candidate(id=cid, parent_id=parent, fitness=fitness, **kwargs)  # type: ignore[arg-type]


def good() -> list[Candidate]:
    return [
        cand("a", 1.0, metrics=CandidateMetrics(val_loss=2.0)),
        cand("b", 2.0, "a", metrics=CandidateMetrics(val_loss=1.9)),
        cand("c", 1.5, "a", metrics=CandidateMetrics(val_loss=2.1)),
        cand("r", 3.0, reference_only=True),
    ]


def message_of(strategy: str, candidates: list[Candidate], k: int = 1, options: Options | None = None) -> str:
    with pytest.raises(InvalidArgument) as caught:
        select_parents(strategy, candidates, k, 0, options or Options())
    return caught.value.message


def test_unknown_strategy_lists_the_valid_ones() -> None:
    assert message_of("foo", good()) == (
        "unknown strategy 'foo'; valid strategies: asi-arch, hgm, lexicase, pareto, random, uct"
    )
    # The name is checked before anything else, so even an empty request gets this message.
    assert message_of("", []).startswith("unknown strategy ''")


@pytest.mark.parametrize("strategy", ["asi-arch", "uct", "hgm", "lexicase", "pareto"])
def test_every_strategy_validates_the_population(strategy: str) -> None:
    assert message_of(strategy, []) == "candidates must not be empty"
    assert message_of(strategy, [*good(), cand("b")]) == (
        "duplicate candidate id 'b' at candidates[1] and candidates[4]"
    )
    assert message_of(strategy, [cand("a"), cand("b", math.nan)]) == "candidates[1] (id 'b'): fitness is NaN"
    assert (
        message_of(strategy, [cand("a", parent="b"), cand("b", parent="a")]) == "lineage cycle: a -> b -> a"
    )


@pytest.mark.parametrize("k", [0, 4, -1])
def test_k_must_fit_the_eligible_candidates(k: int) -> None:
    assert message_of("asi-arch", good(), k=k) == (
        f"k must be between 1 and 3 (the candidates that are not reference_only), got {k}"
    )


def test_k_may_take_every_eligible_candidate() -> None:
    selection = select_parents("asi-arch", good(), 3, 0, Options())
    assert sorted(c.parent_id for c in selection.choices) == ["a", "b", "c"]


def test_all_reference_only_is_rejected() -> None:
    pop = [cand("a", reference_only=True), cand("b", reference_only=True)]
    assert message_of("uct", pop) == "no candidate can be a parent: all 2 are reference_only"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(exploration=-1.0), "options.exploration must be >= 0, got -1"),
        (Options(success_threshold=math.nan), "options.success_threshold must be finite, got NaN"),
        (Options(expansion_exponent=0.0), "options.expansion_exponent must be in (0, 1], got 0"),
        (Options(lexicase_epsilon=-1.0), "options.lexicase_epsilon must be >= 0, got -1"),
        (Options(parent_pool=0), "options.parent_pool must be >= 1, got 0"),
        (Options(reference_pool_end=9), "options.reference_pool_end must be >= parent_pool (10), got 9"),
        (Options(references=51), "options.references must be between 0 and 50, got 51"),
        (
            Options(objectives=("accuracy",)),
            "options.objectives[0]: unknown objective 'accuracy'; "
            "valid objectives: benchmarks, loss, parameters, throughput",
        ),
    ],
)
def test_options_are_validated_for_every_strategy(options: Options, message: str) -> None:
    # Checked whichever strategy runs: a bad value is a caller bug even where it is ignored.
    assert message_of("asi-arch", good(), options=options) == message
    assert message_of("pareto", good(), options=options) == message


def test_metric_values_must_be_finite() -> None:
    pop = [cand("a"), cand("b", metrics=CandidateMetrics(val_loss=math.inf))]
    assert message_of("lexicase", pop) == "candidates[1] (id 'b'): metrics.val_loss is inf"


def test_parents_must_exist_and_differ_from_the_child() -> None:
    assert message_of("hgm", [cand("a"), cand("b", parent="a"), cand("c", parent="zz")]) == (
        "candidates[2] (id 'c'): parent_id 'zz' is not among the candidates"
    )
    assert message_of("hgm", [cand("a", parent="a")]) == "candidates[0] (id 'a'): parent_id 'a' is its own id"
    assert message_of("hgm", [cand("")]) == "candidates[0]: id must not be empty"


def test_the_work_of_one_call_is_bounded() -> None:
    many = [cand(f"c{i}", metrics=CandidateMetrics(val_loss=1.0)) for i in range(MAX_CANDIDATES + 1)]
    assert message_of("uct", many) == (
        f"candidates: at most {MAX_CANDIDATES} per call, got {MAX_CANDIDATES + 1}"
    )
    assert message_of("uct", many[: MAX_PARENTS + 1], k=MAX_PARENTS + 1) == (
        f"k must be at most {MAX_PARENTS} (parents per call), got {MAX_PARENTS + 1}"
    )
    names = [
        cand(f"c{i}", metrics=CandidateMetrics(benchmarks={f"b{i}": 0.5})) for i in range(MAX_BENCHMARKS + 1)
    ]
    assert message_of("pareto", names) == (
        f"candidates: at most {MAX_BENCHMARKS} distinct metrics.benchmarks names per call "
        f"(each is an objective), got {MAX_BENCHMARKS + 1}"
    )
    select_parents("uct", many[:MAX_CANDIDATES], MAX_PARENTS, 0, Options())  # at the bounds: accepted
