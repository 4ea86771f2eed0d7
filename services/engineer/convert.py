"""Between the worker's plain dicts (checks, metrics, stage names) and the contract's messages.

The budget converts itself (asiarch.engineer.budgets.Budget.from_proto / to_proto).
"""

from __future__ import annotations

from typing import Any

from asiarch.engineer.static_checks import StaticCheck
from asiarch.v1 import common_pb2

STAGES = {
    "static": common_pb2.EVALUATION_STAGE_STATIC_CHECKS,
    "functional": common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
    "compile": common_pb2.EVALUATION_STAGE_COMPILE,
    "training": common_pb2.EVALUATION_STAGE_TRAINING,
    "benchmarks": common_pb2.EVALUATION_STAGE_BENCHMARKS,
}


def static_check_to_proto(check: StaticCheck) -> common_pb2.CheckResult:
    return common_pb2.CheckResult(
        name=check.name,
        stage=common_pb2.EVALUATION_STAGE_STATIC_CHECKS,
        passed=check.passed,
        message=check.message,
        line=check.line,
    )


def check_to_proto(check: dict[str, Any]) -> common_pb2.CheckResult:
    return common_pb2.CheckResult(
        name=check["name"],
        stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
        passed=bool(check["passed"]),
        message=check.get("message", ""),
        line=int(check.get("line", 0)),
        duration_seconds=float(check.get("duration_seconds", 0.0)),
        measurements={k: float(v) for k, v in check.get("measurements", {}).items()},
    )


def metrics_to_proto(metrics: dict[str, Any]) -> common_pb2.Metrics:
    message = common_pb2.Metrics(
        train_seconds=metrics.get("train_seconds", 0.0),
        compile_seconds=metrics.get("compile_seconds", 0.0),
        steps=int(metrics.get("steps", 0)),
    )
    for field in ("val_loss", "bits_per_byte", "train_loss", "tokens_per_second"):
        if metrics.get(field) is not None:
            setattr(message, field, float(metrics[field]))
    for field in ("parameters", "layer_parameters", "peak_memory_bytes"):
        if metrics.get(field) is not None:
            setattr(message, field, int(metrics[field]))
    for point in metrics.get("loss_curve", []):
        entry = message.loss_curve.add(
            step=int(point["step"]), train_loss=point["train_loss"], elapsed_seconds=point["elapsed_seconds"]
        )
        if "val_loss" in point:
            entry.val_loss = point["val_loss"]
    message.proxies.update({name: float(value) for name, value in metrics.get("proxies", {}).items()})
    for score in metrics.get("benchmarks", []):
        message.benchmarks.add(
            name=score["name"], task=score["task"], score=score["score"], settings=score["settings"]
        )
    return message
