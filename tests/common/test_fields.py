"""The rules every request field obeys: finite numbers and defined enum values, named by their path."""

from __future__ import annotations

import pytest

from asiarch.common.fields import field_problem, short
from asiarch.v1 import common_pb2, engineer_pb2, researcher_pb2

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
