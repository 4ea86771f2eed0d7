"""Quasi-ablation tables and the breakthrough test.

The child is set against its parent (the one change the proposal made),
grandparent (two changes), siblings (other changes to the same parent),
the run's baselines and the best experiment so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asiarch.analyst.fitness import layer_parameters, mean_benchmark
from asiarch.v1 import common_pb2

LOWER_IS_BETTER = {"val_loss", "layer_parameters", "peak_memory_mb"}


def metric_values(experiment: common_pb2.Experiment) -> dict[str, float]:
    """The metrics compared, by name (only those that were measured)."""
    metrics = experiment.evaluation.metrics
    values: dict[str, float] = {}
    if metrics.HasField("val_loss"):
        values["val_loss"] = metrics.val_loss
    for benchmark in metrics.benchmarks:
        values[benchmark.name] = benchmark.score
    mean = mean_benchmark(metrics)
    if mean is not None:
        values["benchmark_mean"] = mean
    if metrics.HasField("tokens_per_second"):
        values["tokens_per_second"] = metrics.tokens_per_second
    params = layer_parameters(metrics)
    if params is not None:
        values["layer_parameters"] = float(params)
    if metrics.HasField("peak_memory_bytes"):
        values["peak_memory_mb"] = metrics.peak_memory_bytes / 2**20
    return values


def compare(
    experiment: common_pb2.Experiment, other: common_pb2.Experiment, relation: common_pb2.Relation
) -> common_pb2.Comparison:
    mine, theirs = metric_values(experiment), metric_values(other)
    deltas = []
    for metric, value in mine.items():
        if metric not in theirs:
            continue
        delta = value - theirs[metric]
        improved = delta < 0 if metric in LOWER_IS_BETTER else delta > 0
        deltas.append(
            common_pb2.MetricDelta(
                metric=metric, value=value, other_value=theirs[metric], delta=delta, improved=improved
            )
        )
    return common_pb2.Comparison(
        experiment_id=other.id, relation=relation, name=other.name or other.proposal.name, deltas=deltas
    )


@dataclass(frozen=True)
class Relatives:
    parent: common_pb2.Experiment | None
    grandparent: common_pb2.Experiment | None
    siblings: list[common_pb2.Experiment]
    baselines: list[common_pb2.Experiment]
    best: common_pb2.Experiment | None


def comparisons(experiment: common_pb2.Experiment, relatives: Relatives) -> list[common_pb2.Comparison]:
    table: list[common_pb2.Comparison] = []
    seen: set[str] = {experiment.id}

    def add(others: Iterable[common_pb2.Experiment | None], relation: common_pb2.Relation) -> None:
        for other in others:
            if other is not None and other.id not in seen:
                seen.add(other.id)
                table.append(compare(experiment, other, relation))

    add([relatives.parent], common_pb2.RELATION_PARENT)
    add([relatives.grandparent], common_pb2.RELATION_GRANDPARENT)
    add(relatives.siblings, common_pb2.RELATION_SIBLING)
    add(relatives.baselines, common_pb2.RELATION_BASELINE)
    add([relatives.best], common_pb2.RELATION_BEST_SO_FAR)
    return table


def breakthrough(experiment: common_pb2.Experiment, relatives: Relatives, margin: float) -> tuple[bool, str]:
    """Beats every selectable baseline and the best so far: loss lower by `margin`, benchmarks not lower."""
    if experiment.is_baseline:
        return False, "baselines are the references, not candidates"
    mine = metric_values(experiment)
    if "val_loss" not in mine:
        return False, "no validation loss was measured"
    rivals = [b for b in relatives.baselines if not b.proposal.reference_only and b.id != experiment.id]
    if relatives.best is not None and relatives.best.id not in {r.id for r in rivals}:
        rivals.append(relatives.best)
    if not rivals:
        return False, "nothing to compare with yet (no baseline and no earlier experiment in this run)"
    reasons = []
    for rival in rivals:
        theirs = metric_values(rival)
        name = rival.name or rival.id
        if "val_loss" not in theirs:
            continue
        needed = (1 - margin) * theirs["val_loss"]
        if mine["val_loss"] > needed:
            return False, (
                f"val_loss {mine['val_loss']:.4f} does not beat {name} ({theirs['val_loss']:.4f}) "
                f"by the {margin:.1%} margin (needs <= {needed:.4f})"
            )
        if mine.get("benchmark_mean", 0.0) < theirs.get("benchmark_mean", 0.0):
            return False, (
                f"mean benchmark accuracy {mine.get('benchmark_mean', 0.0):.3f} is below "
                f"{name}'s {theirs['benchmark_mean']:.3f}"
            )
        reasons.append(f"{name} (val_loss {theirs['val_loss']:.4f})")
    return True, (
        f"val_loss {mine['val_loss']:.4f} beats by at least {margin:.1%} with benchmarks no lower: "
        + ", ".join(reasons)
    )
