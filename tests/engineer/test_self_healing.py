"""Self-healing through a researcher (a small in-test Researcher service), and back-pressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import layers
import pytest
from support import RunningService, serving, start_service

from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc, researcher_pb2, researcher_pb2_grpc

SMOKE = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE)


class FixingResearcher(researcher_pb2_grpc.ResearcherServicer):
    """Fixes a NaN-producing layer; 'repairs' anything else by returning it unchanged."""

    def __init__(self) -> None:
        self.requests: list[researcher_pb2.RepairRequest] = []

    def Repair(self, request: researcher_pb2.RepairRequest, context: grpc.ServicerContext) -> object:
        self.requests.append(request)
        fixed = layers.GOOD if "NaN" in request.error else request.source.module_source
        return researcher_pb2.RepairResponse(
            source=common_pb2.ArchitectureSource(module_source=fixed, class_name="DeltaNet"),
            summary="replaced the NaN output with a running mean",
            repaired_by="test:fixing-researcher",
        )


@pytest.fixture(scope="module")
def researcher() -> Iterator[tuple[FixingResearcher, int]]:
    servicer = FixingResearcher()
    with serving(researcher_pb2_grpc.add_ResearcherServicer_to_server, servicer) as port:
        yield servicer, port


@pytest.fixture(scope="module")
def engineer(
    tmp_path_factory: pytest.TempPathFactory, researcher: tuple[FixingResearcher, int]
) -> Iterator[RunningService]:
    env = {
        "ASIARCH_RESEARCHER_ADDRESS": f"127.0.0.1:{researcher[1]}",
        "ASIARCH_ENGINEER_MAX_CONCURRENT": "1",
        "ASIARCH_ENGINEER_MAX_QUEUED": "0",
        "ASIARCH_ENGINEER_SANDBOX_MEMORY_GB": "3",
    }
    service = start_service("engineer", tmp_path_factory.mktemp("healing"), env=env)
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def stub(engineer: RunningService) -> engineer_pb2_grpc.EngineerStub:
    return engineer_pb2_grpc.EngineerStub(engineer.channel())


def evaluate(stub: engineer_pb2_grpc.EngineerStub, text: str, **fields: object) -> common_pb2.Evaluation:
    proposal = common_pb2.Proposal(
        name="c", motivation="keep a running memory", source=common_pb2.ArchitectureSource(module_source=text)
    )
    request = engineer_pb2.EvaluateRequest(experiment_id="heal-1", proposal=proposal, budget=SMOKE, **fields)
    return list(stub.Evaluate(request, timeout=300))[-1].result


def test_a_broken_candidate_is_repaired_and_evaluated(
    stub: engineer_pb2_grpc.EngineerStub, researcher: tuple[FixingResearcher, int]
) -> None:
    servicer, _ = researcher
    servicer.requests.clear()
    result = evaluate(stub, layers.NAN, max_repairs=2)
    assert result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED, result.failure_reason
    assert len(result.repairs) == 1
    repair = result.repairs[0]
    assert repair.attempt == 1
    assert repair.failed_stage == common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
    assert "NaN" in repair.error
    assert repair.succeeded
    assert repair.summary == "replaced the NaN output with a running mean"
    assert repair.repaired_by == "test:fixing-researcher"
    assert "-        return x * float('nan'), None" in repair.patch
    assert "+        return torch.cumsum(x, dim=1) / counts, None" in repair.patch
    assert result.final_source.module_source == layers.GOOD
    assert result.metrics.val_loss > 0
    (sent,) = servicer.requests
    assert sent.failed_stage == common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS
    assert sent.motivation == "keep a running memory"
    assert sent.attempt == 1


def test_repairs_stop_after_max_attempts_and_are_all_recorded(stub: engineer_pb2_grpc.EngineerStub) -> None:
    result = evaluate(stub, layers.NON_CAUSAL, max_repairs=2)
    assert result.status == common_pb2.EVALUATION_STATUS_FAILED
    assert [r.attempt for r in result.repairs] == [1, 2]
    assert not any(r.succeeded for r in result.repairs)
    assert "future tokens" in result.failure_reason


def test_busy_engineer_answers_resource_exhausted(stub: engineer_pb2_grpc.EngineerStub) -> None:
    budget = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE, wall_clock_seconds=15)
    proposal = common_pb2.Proposal(
        name="slow", source=common_pb2.ArchitectureSource(module_source=layers.INFINITE_LOOP)
    )
    first = stub.Evaluate(
        engineer_pb2.EvaluateRequest(experiment_id="slow", proposal=proposal, budget=budget, max_repairs=0),
        timeout=120,
    )
    finished = threading.Event()
    threading.Thread(target=lambda: (list(first), finished.set()), daemon=True).start()
    time.sleep(1.0)  # the first evaluation holds the only slot
    with pytest.raises(grpc.RpcError) as caught:
        list(
            stub.Evaluate(engineer_pb2.EvaluateRequest(experiment_id="second", proposal=proposal), timeout=30)
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ASIARCH_ENGINEER_MAX_CONCURRENT" in caught.value.details()
    assert finished.wait(timeout=60)


def test_a_timeout_runs_again_once_and_is_never_sent_to_repair(
    stub: engineer_pb2_grpc.EngineerStub, researcher: tuple[FixingResearcher, int]
) -> None:
    servicer, _ = researcher
    servicer.requests.clear()
    budget = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE, wall_clock_seconds=6)
    proposal = common_pb2.Proposal(
        name="slow", source=common_pb2.ArchitectureSource(module_source=layers.INFINITE_LOOP)
    )
    request = engineer_pb2.EvaluateRequest(
        experiment_id="slow-2", proposal=proposal, budget=budget, max_repairs=2
    )
    events = list(stub.Evaluate(request, timeout=120))
    result = events[-1].result
    assert result.status == common_pb2.EVALUATION_STATUS_TIMED_OUT
    assert list(result.repairs) == [] and servicer.requests == []
    reruns = [e for e in events if "running the same code again" in e.progress.message]
    assert len(reruns) == 1
    assert result.wall_seconds >= 2 * 6
