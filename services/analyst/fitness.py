"""Fitness: measured quality in noise units against the run's reference baseline, plus a bounded judge.

    loss_s  = (L_ref − L) / (2·sd_L)          how many noise steps better than the reference on loss
    bench_s = (B − B_ref) / (2·sd_B)          … and on mean benchmark (MQAR) accuracy
    judge   = (w − 1) / 9 ∈ [0, 1],  w = 0.3·performance + 0.25·innovation + 0.45·complexity  (each 1–10)
    total   = loss_s + bench_s + judge

ASI-Arch's parts (σ(6·clip(Δ / 10 % of the baseline))) are kept in spirit, measured-first, but not in
form: the 10 % band saturated on noise (an MQAR reference at chance made any gain a full point), and a
saturated term let the judge reorder designs the measurements had already told apart. Here sd_L and
sd_B are the budget's measured noise floor (`asiarch.common.noise`), so a step is twice the run-to-run
sd, and the ranking guarantees: when A beats B on loss and on benchmark accuracy by more than 2 sd each,
A's measured parts lead by more than 2 and the judge (at most 1) cannot overturn it.

L_ref and B_ref come from the run's reference baseline (evaluated with the same budget), never from
constants; baselines are scored by the same formula, so their order follows their measurements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pydantic

from asiarch.common import contract
from asiarch.common.noise import NoiseFloor, noise_floor
from asiarch.v1 import common_pb2

DETERMINISTIC_JUDGE = (
    "deterministic:performance=score-parts,innovation=novelty,complexity=parameter-efficiency"
)
NOISE_STEP_SDS = 2.0  # one unit of a measured part is a difference of two standard deviations


def loss_score(loss: float, reference_loss: float, sd: float) -> float:
    return (reference_loss - loss) / (NOISE_STEP_SDS * sd)


def benchmark_score(benchmark: float, reference_benchmark: float, sd: float) -> float:
    return (benchmark - reference_benchmark) / (NOISE_STEP_SDS * sd)


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
    return strongest_baseline(usable) or min(
        usable, key=lambda b: b.evaluation.metrics.val_loss, default=None
    )


def strongest_baseline(baselines: Sequence[common_pb2.Experiment]) -> common_pb2.Experiment | None:
    """The selectable baseline with the lowest validation loss: the one a discovery has to beat."""
    measured = [
        b for b in baselines if not b.proposal.reference_only and b.evaluation.metrics.HasField("val_loss")
    ]
    return min(measured, key=lambda b: b.evaluation.metrics.val_loss, default=None)


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

    performance: the measured parts, 1 + 9·σ(loss_s + bench_s) (5.5 at the reference's measurements);
    innovation:  the motivation's novelty, 1 + 9·novelty;
    complexity:  parameter efficiency, 1 + 9·min(1, P_base / P) over the candidate layers' parameters
                 (a design that needs more parameters than the baseline for its result scores lower);
                 5.5 when either count is unknown.
    """
    efficiency = min(1.0, baseline_params / params) if params and baseline_params else 0.5
    performance = 1 + 9 / (1 + math.exp(-max(-50.0, min(50.0, loss_part + bench_part))))
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
    parts: Parts, judge: common_pb2.JudgeScores, novelty: float, reference: common_pb2.Experiment | None
) -> common_pb2.Fitness:
    judged = judge_score(judge.performance, judge.innovation, judge.complexity)
    return common_pb2.Fitness(
        total=parts.loss + parts.benchmark + judged,
        loss_score=parts.loss,
        benchmark_score=parts.benchmark,
        judge_score=judged,
        judge=judge,
        novelty=novelty,
        baseline_id=reference.id if reference is not None else "",
        baseline_loss=parts.baseline_loss,
        baseline_benchmark=parts.baseline_benchmark,
        loss_noise_sd=parts.noise.val_loss_sd,
        benchmark_noise_sd=parts.noise.benchmark_sd,
        noise_floor=parts.noise.source,
    )


class Parts(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    loss: float
    benchmark: float
    baseline_loss: float
    baseline_benchmark: float
    noise: NoiseFloor


def budget_noise(evaluation: common_pb2.Evaluation, reference_loss: float) -> NoiseFloor:
    """The noise floor of the budget the evaluation ran with."""
    budget = evaluation.budget
    return noise_floor(contract.preset_name(budget.preset), budget.rung or 1, reference_loss)


def measured_parts(experiment: common_pb2.Experiment, reference: common_pb2.Experiment | None) -> Parts:
    """loss_s and bench_s against the reference; against itself (0 each) while the run has none yet."""
    metrics = experiment.evaluation.metrics
    basis = reference.evaluation.metrics if reference is not None else metrics
    noise = budget_noise(experiment.evaluation, basis.val_loss)
    bench, base_bench = mean_benchmark(metrics), mean_benchmark(basis)
    return Parts(
        loss=loss_score(metrics.val_loss, basis.val_loss, noise.val_loss_sd),
        benchmark=(
            benchmark_score(bench, base_bench, noise.benchmark_sd)
            if bench is not None and base_bench is not None
            else 0.0
        ),
        baseline_loss=basis.val_loss,
        baseline_benchmark=base_bench or 0.0,
        noise=noise,
    )


def rescored(experiment: common_pb2.Experiment, reference: common_pb2.Experiment) -> common_pb2.Fitness:
    """The experiment's fitness against another reference; an LLM judge's scores are kept, the
    deterministic judge (which reads the measured parts) is asked again."""
    parts = measured_parts(experiment, reference)
    judge = common_pb2.JudgeScores()
    judge.CopyFrom(experiment.fitness.judge)
    if not judge.judged_by or judge.judged_by.startswith("deterministic"):
        fresh = deterministic_judge(
            parts.loss,
            parts.benchmark,
            experiment.fitness.novelty,
            layer_parameters(experiment.evaluation.metrics),
            layer_parameters(reference.evaluation.metrics),
        )
        fresh.judged_by = judge.judged_by or fresh.judged_by
        judge = fresh
    return compose(parts, judge, experiment.fitness.novelty, reference)
