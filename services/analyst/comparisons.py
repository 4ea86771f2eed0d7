"""Quasi-ablation tables and the exploratory lead that earns a confirmation.

The child is set against its parent (the one change the proposal made),
grandparent (two changes), siblings (other changes to the same parent),
the run's baselines and the best experiment so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asiarch.analyst.fitness import layer_parameters, mean_benchmark, strongest_baseline
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


def leads(experiment: common_pb2.Experiment, rival: common_pb2.Experiment) -> bool:
    """Lower validation loss than `rival` by more than one noise sd, mean benchmark accuracy not lower by
    more than one: the exploratory result that earns a confirmation."""
    mine, theirs = metric_values(experiment), metric_values(rival)
    if "val_loss" not in mine or "val_loss" not in theirs:
        return False
    loss_sd, bench_sd = experiment.fitness.loss_noise_sd, experiment.fitness.benchmark_noise_sd
    bench_gap = mine.get("benchmark_mean", 0.0) - theirs.get("benchmark_mean", 0.0)
    return theirs["val_loss"] - mine["val_loss"] > loss_sd and bench_gap >= -bench_sd


def exploratory_verdict(experiment: common_pb2.Experiment, relatives: Relatives) -> str:
    """Why the experiment is not (yet) a breakthrough: only a confirmed result is one."""
    if experiment.is_baseline or experiment.replicate_of:
        return "baselines and replicates are references, not candidates"
    rival = strongest_baseline(relatives.baselines)
    if rival is None:
        return "not a breakthrough: no baseline of this run to compare with yet"
    mine, theirs = metric_values(experiment), metric_values(rival)
    if "val_loss" not in mine:
        return "not a breakthrough: no validation loss was measured"
    name = rival.name or rival.id
    lead = theirs["val_loss"] - mine["val_loss"]
    sd = experiment.fitness.loss_noise_sd
    if leads(experiment, rival):
        return (
            f"not confirmed yet: in its exploratory run val_loss {mine['val_loss']:.4f} beats the strongest "
            f"baseline {name} ({theirs['val_loss']:.4f}) by {lead:.4f} (noise sd {sd:.4f}); a breakthrough "
            "needs confirmation on several seeds (asiarch confirm)"
        )
    return (
        f"not a breakthrough: val_loss {mine['val_loss']:.4f} against the strongest baseline {name}'s "
        f"{theirs['val_loss']:.4f} (lead {lead:+.4f}, noise sd {sd:.4f}) is no lead beyond the noise"
    )
