"""Between the worker's plain dicts and the contract's messages.

A Budget's enums become the names asiarch.engineer.budgets resolves
(BUDGET_PRESET_CPU is "cpu", PRECISION_BF16_AUTOCAST is "bf16-autocast"); the
resolved budget goes back into the Evaluation with every field set, the
precision that ran included.
"""

from __future__ import annotations

from typing import Any

from asiarch.engineer.budgets import OVERRIDABLE, resolve
from asiarch.engineer.static_checks import StaticCheck
from asiarch.v1 import common_pb2

STAGES = {
    "static": common_pb2.EVALUATION_STAGE_STATIC_CHECKS,
    "functional": common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
    "compile": common_pb2.EVALUATION_STAGE_COMPILE,
    "training": common_pb2.EVALUATION_STAGE_TRAINING,
    "benchmarks": common_pb2.EVALUATION_STAGE_BENCHMARKS,
}
PRESET_NAMES = {
    common_pb2.BUDGET_PRESET_SMOKE: "smoke",
    common_pb2.BUDGET_PRESET_CPU: "cpu",
    common_pb2.BUDGET_PRESET_GPU: "gpu",
}
PRESET_ENUMS = {name: value for value, name in PRESET_NAMES.items()}
# PRECISION_BF16_AUTOCAST is "bf16-autocast"; UNSPECIFIED (0) is no name: the preset's default.
PRECISION_NAMES = {
    value: name.removeprefix("PRECISION_").lower().replace("_", "-")
    for name, value in common_pb2.Precision.items()
    if value
}
PRECISION_ENUMS = {name: value for value, name in PRECISION_NAMES.items()}


def budget_from_proto(
    budget: common_pb2.Budget, default_preset: str, default_device: str, wall_factor: float = 1.0
) -> dict[str, Any]:
    """Resolve a Budget message into concrete numbers (raises budgets.BudgetError)."""
    preset = PRESET_NAMES.get(budget.preset, default_preset)
    overrides = {field: getattr(budget, field) for field in OVERRIDABLE if budget.HasField(field)}
    return resolve(
        preset,
        overrides,
        rung=budget.rung or 1,
        seed=budget.seed,
        device=budget.device or default_device,
        wall_factor=wall_factor,
        precision=PRECISION_NAMES.get(budget.precision),
    )


def budget_to_proto(budget: dict[str, Any]) -> common_pb2.Budget:
    message = common_pb2.Budget(
        preset=PRESET_ENUMS[budget["preset"]],
        device=budget["device"],
        rung=budget["rung"],
        seed=budget["seed"],
        precision=PRECISION_ENUMS[budget["precision"]],
    )
    for field in OVERRIDABLE:
        setattr(message, field, budget[field])
    return message


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
    for score in metrics.get("benchmarks", []):
        message.benchmarks.add(
            name=score["name"], task=score["task"], score=score["score"], settings=score["settings"]
        )
    return message
