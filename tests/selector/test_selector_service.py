"""The selector as a real process over gRPC: every strategy, bad input, auth."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from candidates import candidate, population
from support import RunningService, start_service

from asiarch.v1 import selector_pb2, selector_pb2_grpc

STRATEGIES = ["asi-arch", "hgm", "lexicase", "pareto", "random", "uct"]


@pytest.fixture(scope="module")
def selector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("selector", tmp_path_factory.mktemp("selector"))
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def stub(selector: RunningService) -> selector_pb2_grpc.SelectorStub:
    return selector_pb2_grpc.SelectorStub(selector.channel())


def request(strategy: str = "uct", **fields: object) -> selector_pb2.SelectParentsRequest:
    values: dict[str, object] = {"candidates": population(), "k": 1, "seed": 7, **fields}
    return selector_pb2.SelectParentsRequest(strategy=strategy, **values)  # type: ignore[arg-type]


def test_list_strategies(stub: selector_pb2_grpc.SelectorStub) -> None:
    strategies = stub.ListStrategies(selector_pb2.ListStrategiesRequest()).strategies
    assert [s.name for s in strategies] == STRATEGIES
    assert all(s.description and s.source for s in strategies)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_selects_distinct_eligible_parents(
    stub: selector_pb2_grpc.SelectorStub, strategy: str
) -> None:
    response = stub.SelectParents(request(strategy, k=3))
    ids = {c.id for c in population()}
    parents = [s.parent_id for s in response.selections]
    assert response.strategy == strategy
    assert len(parents) == 3
    assert len(set(parents)) == 3
    assert set(parents) <= ids - {"softmax"}
    for selection in response.selections:
        assert selection.reason
        assert selection.parent_id not in selection.reference_ids
        assert set(selection.reference_ids) <= ids
        assert math.isfinite(selection.score) or strategy == "uct"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_answer(stub: selector_pb2_grpc.SelectorStub, strategy: str) -> None:
    assert stub.SelectParents(request(strategy, k=2, seed=11)) == stub.SelectParents(
        request(strategy, k=2, seed=11)
    )


def test_hgm_reports_expand_or_reevaluate(stub: selector_pb2_grpc.SelectorStub) -> None:
    response = stub.SelectParents(request("hgm"))
    # 7 nodes evaluated once each: 7^0.6 = 3.2 < 7, so HGM re-evaluates.
    assert response.next_action == selector_pb2.NEXT_ACTION_REEVALUATE
    assert "7" in response.next_action_reason
    options = selector_pb2.SelectionOptions(expansion_exponent=1.0)
    assert stub.SelectParents(request("hgm", options=options)).next_action == selector_pb2.NEXT_ACTION_EXPAND


def test_uct_prefers_unvisited_nodes(stub: selector_pb2_grpc.SelectorStub) -> None:
    visited = {"deltanet", "child-a"}  # the only nodes with children
    for seed in range(20):
        chosen = stub.SelectParents(request("uct", seed=seed)).selections[0].parent_id
        assert chosen not in visited


def invalid(stub: selector_pb2_grpc.SelectorStub, req: selector_pb2.SelectParentsRequest) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SelectParents(req)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return caught.value.details()


def with_candidate(index: int, replacement: selector_pb2.Candidate) -> list[selector_pb2.Candidate]:
    candidates = population()
    candidates[index] = replacement
    return candidates


def test_unknown_strategy_names_the_valid_ones(stub: selector_pb2_grpc.SelectorStub) -> None:
    message = invalid(stub, request("greedy"))
    assert "unknown strategy 'greedy'" in message
    assert "asi-arch, hgm, lexicase, pareto, random, uct" in message


def test_no_candidates(stub: selector_pb2_grpc.SelectorStub) -> None:
    assert "candidates must not be empty" in invalid(stub, request(candidates=[]))


@pytest.mark.parametrize("k", [0, 7])
def test_k_out_of_range(stub: selector_pb2_grpc.SelectorStub, k: int) -> None:
    message = invalid(stub, request(k=k))
    assert f"got {k}" in message
    assert "between 1 and 6" in message  # 7 candidates, one reference_only


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_fitness(stub: selector_pb2_grpc.SelectorStub, value: float) -> None:
    message = invalid(stub, request(candidates=with_candidate(1, candidate("deltanet", value))))
    assert message.startswith("candidates[1].fitness is NaN or infinite")


def test_non_finite_metric(stub: selector_pb2_grpc.SelectorStub) -> None:
    bad = candidate("deltanet", 1.5, loss=math.nan)
    message = invalid(stub, request("lexicase", candidates=with_candidate(1, bad)))
    assert message.startswith("candidates[1].metrics.val_loss is NaN or infinite")


def test_duplicate_ids(stub: selector_pb2_grpc.SelectorStub) -> None:
    message = invalid(stub, request(candidates=with_candidate(2, candidate("linear", 1.0))))
    assert "duplicate candidate id 'linear'" in message
    assert "candidates[0]" in message
    assert "candidates[2]" in message


def test_parent_that_does_not_exist(stub: selector_pb2_grpc.SelectorStub) -> None:
    orphan = candidate("child-a", 1.65, parent="ghost")
    message = invalid(stub, request(candidates=with_candidate(4, orphan)))
    assert "candidates[4] (id 'child-a')" in message
    assert "parent_id 'ghost'" in message


def test_bad_option(stub: selector_pb2_grpc.SelectorStub) -> None:
    options = selector_pb2.SelectionOptions(exploration=-1.0)
    assert "exploration" in invalid(stub, request(options=options))


def test_auth_on_requires_the_token(tmp_path: Path) -> None:
    service = start_service("selector", tmp_path, env={"ASIARCH_AUTH_TOKEN": "t0ken"})
    try:
        secured = selector_pb2_grpc.SelectorStub(service.channel())
        with pytest.raises(grpc.RpcError) as caught:
            secured.SelectParents(request())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        response = secured.SelectParents(request(), metadata=(("authorization", "Bearer t0ken"),))
        assert len(response.selections) == 1
    finally:
        assert service.stop() == 0
