"""ASI-Arch's composite fitness, with baselines measured on the same task suite.

    loss_s  = σ(6·clip((L_base − L) / (0.1·L_base), −1, 1))
    bench_s = σ(6·clip((B − B_base) / (0.1·B_base), −1, 1))     B = mean benchmark accuracy
    judge   = (w − 1) / 9,   w = 0.3·performance + 0.25·innovation + 0.45·complexity  (each 1–10)
    total   = loss_s + bench_s + judge ∈ [0, 3]

L_base and B_base come from a baseline experiment of the same run (the
engineer's baselines, evaluated with the same budget), never from constants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pydantic

from asiarch.v1 import common_pb2

BASELINE_JUDGE = "neutral:baseline"
DETERMINISTIC_JUDGE = (
    "deterministic:performance=score-parts,innovation=novelty,complexity=parameter-efficiency"
)


def _squash(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-6.0 * max(-1.0, min(1.0, x))))


def _relative(gain: float, base: float) -> float:
    # A zero baseline (e.g. MQAR at chance 0.0) has no 10 % band: any gain is a full step.
    if base <= 0:
        return 0.0 if gain == 0 else math.copysign(1.0, gain)
    return gain / (0.1 * base)


def loss_score(loss: float, baseline_loss: float) -> float:
    return _squash(_relative(baseline_loss - loss, baseline_loss))


def benchmark_score(benchmark: float, baseline_benchmark: float) -> float:
    return _squash(_relative(benchmark - baseline_benchmark, baseline_benchmark))


def judge_score(performance: float, innovation: float, complexity: float) -> float:
    weighted = 0.3 * performance + 0.25 * innovation + 0.45 * complexity
    return (weighted - 1.0) / 9.0


def mean_benchmark(metrics: common_pb2.Metrics) -> float | None:
    scores = [b.score for b in metrics.benchmarks]
    return sum(scores) / len(scores) if scores else None


def choose_baseline(
    baselines: Sequence[common_pb2.Experiment], preferred: str
) -> common_pb2.Experiment | None:
    """The baseline named `preferred`, else the strongest selectable one (lowest validation loss)."""
    usable = [b for b in baselines if b.evaluation.metrics.HasField("val_loss")]
    for baseline in usable:
        if preferred in (baseline.name, baseline.proposal.name, baseline.id):
            return baseline
    selectable = [b for b in usable if not b.proposal.reference_only] or usable
    return min(selectable, key=lambda b: b.evaluation.metrics.val_loss, default=None)


class JudgeAnswer(pydantic.BaseModel):
    """What the LLM judge must return."""

    performance: float = pydantic.Field(ge=1, le=10)
    innovation: float = pydantic.Field(ge=1, le=10)
    complexity: float = pydantic.Field(ge=1, le=10)
    rationale: str = pydantic.Field(min_length=10, max_length=2000)


def layer_parameters(metrics: common_pb2.Metrics) -> int | None:
    if metrics.HasField("layer_parameters") and metrics.layer_parameters:
        return metrics.layer_parameters
    if metrics.HasField("parameters") and metrics.parameters:
        return metrics.parameters
    return None


def deterministic_judge(
    loss_part: float, bench_part: float, novelty: float, params: int | None, baseline_params: int | None
) -> common_pb2.JudgeScores:
    """The stand-in judge used without an LLM (and when the LLM fails).

    performance: the measured parts, 1 + 9·(loss_s + bench_s)/2;
    innovation:  the motivation's novelty, 1 + 9·novelty;
    complexity:  parameter efficiency, 1 + 9·min(1, P_base / P) over the candidate layers' parameters
                 (a design that needs more parameters than the baseline for its result scores lower);
                 5.5 when either count is unknown.
    """
    efficiency = min(1.0, baseline_params / params) if params and baseline_params else 0.5
    performance = 1 + 9 * (loss_part + bench_part) / 2
    innovation = 1 + 9 * max(0.0, min(1.0, novelty))
    complexity = 1 + 9 * efficiency
    return common_pb2.JudgeScores(
        performance=round(performance, 3),
        innovation=round(innovation, 3),
        complexity=round(complexity, 3),
        rationale=(
            f"Deterministic judge: loss score {loss_part:.3f} and benchmark score {bench_part:.3f} give "
            f"performance {performance:.2f}; novelty {novelty:.3f} gives innovation {innovation:.2f}; "
            + (
                f"layer parameters {params:,} against the baseline's {baseline_params:,} give complexity "
                f"{complexity:.2f}."
                if params and baseline_params
                else f"parameter counts unknown, complexity {complexity:.2f}."
            )
        ),
        judged_by=DETERMINISTIC_JUDGE,
    )


def compose(
    parts: Parts, judge: common_pb2.JudgeScores, novelty: float, baseline: common_pb2.Experiment | None
) -> common_pb2.Fitness:
    judged = judge_score(judge.performance, judge.innovation, judge.complexity)
    return common_pb2.Fitness(
        total=parts.loss + parts.benchmark + judged,
        loss_score=parts.loss,
        benchmark_score=parts.benchmark,
        judge_score=judged,
        judge=judge,
        novelty=novelty,
        baseline_id=baseline.id if baseline is not None else "",
        baseline_loss=parts.baseline_loss,
        baseline_benchmark=parts.baseline_benchmark,
    )


class Parts(pydantic.BaseModel):
    loss: float
    benchmark: float
    baseline_loss: float
    baseline_benchmark: float


def measured_parts(experiment: common_pb2.Experiment, baseline: common_pb2.Experiment | None) -> Parts:
    """loss_s and bench_s; against itself (0.5 each) when the run has no baseline yet."""
    metrics = experiment.evaluation.metrics
    reference = baseline.evaluation.metrics if baseline is not None else metrics
    loss = metrics.val_loss
    base_loss = reference.val_loss
    bench = mean_benchmark(metrics)
    base_bench = mean_benchmark(reference)
    return Parts(
        loss=loss_score(loss, base_loss),
        benchmark=benchmark_score(bench, base_bench) if bench is not None and base_bench is not None else 0.5,
        baseline_loss=base_loss,
        baseline_benchmark=base_bench or 0.0,
    )
