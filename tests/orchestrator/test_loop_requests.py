"""What the loop asks the engineer for: baselines are never repaired, candidates may be.

The loop is a gRPC client; here its engineer and analyst are in-test objects with the stubs'
call shapes, so the requests it sends can be read exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from asiarch.orchestrator.loop import Discovery, Options, Stubs
from asiarch.v1 import analyst_pb2, common_pb2, engineer_pb2


class RecordingEngineer:
    def __init__(self) -> None:
        self.requests: list[engineer_pb2.EvaluateRequest] = []

    def Evaluate(self, request: engineer_pb2.EvaluateRequest, timeout: float) -> AsyncIterator[Any]:
        self.requests.append(request)

        async def stream() -> AsyncIterator[engineer_pb2.EvaluationEvent]:
            yield engineer_pb2.EvaluationEvent(
                result=common_pb2.Evaluation(status=common_pb2.EVALUATION_STATUS_SUCCEEDED)
            )

        return stream()


class StoringAnalyst:
    async def Record(self, request: analyst_pb2.RecordRequest, **_: object) -> analyst_pb2.RecordResponse:
        return analyst_pb2.RecordResponse(experiment=request.experiment)


class QuietDisplay:
    def note(self, message: str) -> None: ...
    def started(self, key: str, label: str) -> None: ...
    def progress(self, key: str, event: object) -> None: ...
    def finished(self, key: str, experiment: common_pb2.Experiment) -> None: ...


async def test_baselines_are_evaluated_without_repairs_and_candidates_with_the_engineers_default() -> None:
    engineer = RecordingEngineer()
    loop = Discovery(
        Options(run_id="r", budget="smoke"),
        Stubs(selector=None, researcher=None, engineers=[engineer], analyst=StoringAnalyst()),
        QuietDisplay(),
    )
    proposal = common_pb2.Proposal(name="deltanet", generator="baseline")
    await loop._baseline(proposal)
    await loop.evaluate("r.c0001.0", common_pb2.Proposal(name="child"), None)
    baseline, candidate = engineer.requests
    assert baseline.HasField("max_repairs") and baseline.max_repairs == 0
    assert not candidate.HasField("max_repairs")  # the engineer's ASIARCH_ENGINEER_MAX_REPAIRS decides
