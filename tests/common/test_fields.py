"""The rules every request field obeys: finite numbers and defined enum values, named by their path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asiarch.common.errors import InvalidArgument
from asiarch.common.fields import checked, field_problem, short
from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc, researcher_pb2

INF, NAN = float("inf"), float("nan")


def _parent_with_check_stage(stage: int) -> researcher_pb2.ProposeRequest:
    evaluation = common_pb2.Evaluation(checks=[common_pb2.CheckResult(), common_pb2.CheckResult(stage=stage)])
    return researcher_pb2.ProposeRequest(parent=common_pb2.Experiment(evaluation=evaluation))


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        (researcher_pb2.ProposeRequest(mode=99), "mode 99 is not a defined ProposalMode"),
        (researcher_pb2.RepairRequest(failed_stage=99), "failed_stage 99 is not a defined EvaluationStage"),
        (
            engineer_pb2.ValidateRequest(budget=common_pb2.Budget(preset=99)),
            "budget.preset 99 is not a defined BudgetPreset (one of BUDGET_PRESET_UNSPECIFIED,",
        ),
        (
            engineer_pb2.ValidateRequest(budget=common_pb2.Budget(learning_rate=INF)),
            "budget.learning_rate is NaN or infinite (inf)",
        ),
        (
            engineer_pb2.EvaluateRequest(budget=common_pb2.Budget(wall_clock_seconds=-INF)),
            "budget.wall_clock_seconds is NaN or infinite",
        ),
        (
            _parent_with_check_stage(42),
            "parent.evaluation.checks[1].stage 42 is not a defined EvaluationStage",
        ),
        (
            researcher_pb2.ProposeRequest(
                references=[
                    common_pb2.Experiment(),
                    common_pb2.Experiment(
                        evaluation=common_pb2.Evaluation(
                            metrics=common_pb2.Metrics(
                                benchmarks=[common_pb2.BenchmarkScore(settings={"kv": 1.0, "seq": NAN})]
                            )
                        )
                    ),
                ]
            ),
            "references[1].evaluation.metrics.benchmarks[0].settings['seq'] is NaN or infinite",
        ),
    ],
)
def test_the_first_bad_field_is_named(request_: object, problem: str) -> None:
    assert problem in (field_problem(request_) or "")  # type: ignore[arg-type]


def test_good_requests_have_no_problem() -> None:
    budget = common_pb2.Budget(preset=common_pb2.BUDGET_PRESET_SMOKE, learning_rate=1e-3, device="cpu")
    assert field_problem(engineer_pb2.EvaluateRequest(experiment_id="e", budget=budget)) is None
    assert field_problem(researcher_pb2.ProposeRequest(mode=common_pb2.PROPOSAL_MODE_DSL)) is None


def test_long_values_are_quoted_by_a_short_prefix() -> None:
    assert short("abc") == "'abc'"
    quoted = short("x" * 10_000_000)
    assert len(quoted) < 200 and "first 80 of 10000000 characters" in quoted


@checked(engineer_pb2.DESCRIPTOR.services_by_name["Engineer"])
class _Servicer(engineer_pb2_grpc.EngineerServicer):
    closed = False

    async def Validate(self, request: object, context: object) -> engineer_pb2.ValidateResponse:
        return engineer_pb2.ValidateResponse(valid=True)

    async def Evaluate(self, request: object, context: object) -> AsyncIterator[engineer_pb2.EvaluationEvent]:
        try:
            while True:
                yield engineer_pb2.EvaluationEvent(experiment_id="e")
        finally:
            type(self).closed = True


def test_checked_servicers_refuse_before_the_handler_runs() -> None:
    bad = common_pb2.Budget(learning_rate=NAN)
    servicer = _Servicer()
    with pytest.raises(InvalidArgument, match=r"budget\.learning_rate is NaN"):
        asyncio.run(servicer.Validate(engineer_pb2.ValidateRequest(budget=bad), None))
    assert asyncio.run(servicer.Validate(engineer_pb2.ValidateRequest(), None)).valid

    async def first_event(request: engineer_pb2.EvaluateRequest) -> engineer_pb2.EvaluationEvent:
        stream = servicer.Evaluate(request, None)
        try:
            return await anext(stream)
        finally:
            await stream.aclose()

    with pytest.raises(InvalidArgument, match=r"budget\.learning_rate is NaN"):
        asyncio.run(first_event(engineer_pb2.EvaluateRequest(budget=bad)))
    assert asyncio.run(first_event(engineer_pb2.EvaluateRequest())).experiment_id == "e"
    assert _Servicer.closed  # closing the checked stream closes the handler's stream at once
