"""Experiments for the analyst tests, built the way the orchestrator records them."""

from __future__ import annotations

from asiarch.v1 import common_pb2

RUN = "run-a"


def experiment(
    experiment_id: str,
    *,
    parent: str | None = None,
    loss: float | None = 2.0,
    recall: tuple[float, ...] = (0.10, 0.05),
    baseline: bool = False,
    motivation: str = "",
    run_id: str = RUN,
    status: int = common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
    layer_parameters: int = 50_000,
    reference_only: bool = False,
) -> common_pb2.Experiment:
    metrics = common_pb2.Metrics(
        tokens_per_second=12_000,
        layer_parameters=layer_parameters,
        benchmarks=[
            common_pb2.BenchmarkScore(name=f"mqar/seq{64 * 2**i}_kv{4 * 2**i}", task="mqar", score=score)
            for i, score in enumerate(recall)
        ],
    )
    if loss is not None:
        metrics.val_loss = loss
    evaluation_status = {
        common_pb2.EXPERIMENT_STATUS_SUCCEEDED: common_pb2.EVALUATION_STATUS_SUCCEEDED,
        common_pb2.EXPERIMENT_STATUS_FAILED: common_pb2.EVALUATION_STATUS_FAILED,
    }.get(status, common_pb2.EVALUATION_STATUS_UNSPECIFIED)
    return common_pb2.Experiment(
        id=experiment_id,
        run_id=run_id,
        name=experiment_id,
        parent_ids=[parent] if parent else [],
        is_baseline=baseline,
        status=status,
        proposal=common_pb2.Proposal(
            name=experiment_id,
            motivation=motivation,
            reference_only=reference_only,
            source=common_pb2.ArchitectureSource(module_source="class DeltaNet: ...", class_name="DeltaNet"),
        ),
        evaluation=common_pb2.Evaluation(
            status=evaluation_status,
            metrics=metrics,
            failure_reason="static checks: import of 'os' is not allowed"
            if status == common_pb2.EXPERIMENT_STATUS_FAILED
            else "",
            failed_stage=common_pb2.EVALUATION_STAGE_STATIC_CHECKS
            if status == common_pb2.EXPERIMENT_STATUS_FAILED
            else common_pb2.EVALUATION_STAGE_UNSPECIFIED,
        ),
    )
