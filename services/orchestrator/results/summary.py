"""Numbers and labels derived from Experiments, shared by the tables, plots, report and export."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from asiarch.v1 import common_pb2

SUCCEEDED = common_pb2.EXPERIMENT_STATUS_SUCCEEDED
FAILED = common_pb2.EXPERIMENT_STATUS_FAILED


def status_name(status: int) -> str:
    """EXPERIMENT_STATUS_SUCCEEDED -> "succeeded"."""
    try:
        return common_pb2.ExperimentStatus.Name(status).removeprefix("EXPERIMENT_STATUS_").lower()
    except ValueError:
        return str(status)


def enum_label(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", " ")
    except ValueError:
        return str(value)


def layer_source(experiment: common_pb2.Experiment) -> common_pb2.ArchitectureSource:
    """The source that was finally evaluated (after repairs), else the proposed one."""
    final = experiment.evaluation.final_source
    return final if final.module_source else experiment.proposal.source


def mqar_scores(experiment: common_pb2.Experiment) -> list[common_pb2.BenchmarkScore]:
    return [
        b for b in experiment.evaluation.metrics.benchmarks if b.task == "mqar" or b.name.startswith("mqar/")
    ]


def mean_mqar(experiment: common_pb2.Experiment) -> float | None:
    scores = [b.score for b in mqar_scores(experiment)]
    return sum(scores) / len(scores) if scores else None


def setting_key(name: str) -> tuple[Any, ...]:
    """Order settings like mqar/seq64_kv4 < mqar/seq128_kv8 by their numbers, not as text."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def selectable(experiment: common_pb2.Experiment) -> bool:
    """Succeeded and not a quadratic reference: what the leaderboard ranks by default."""
    return experiment.status == SUCCEEDED and not experiment.proposal.reference_only


def ranked(
    experiments: Iterable[common_pb2.Experiment], include_all: bool = False
) -> list[common_pb2.Experiment]:
    """Highest fitness first; succeeded before the rest, ties by cycle then id (stable across calls)."""
    chosen = [e for e in experiments if include_all or selectable(e)]
    return sorted(chosen, key=lambda e: (e.status != SUCCEEDED, -e.fitness.total, e.cycle, e.id))


def candidates(experiments: Iterable[common_pb2.Experiment]) -> list[common_pb2.Experiment]:
    """Ranked succeeded non-baseline designs (what the run found)."""
    return [e for e in ranked(experiments) if not e.is_baseline]


def best(experiments: Sequence[common_pb2.Experiment]) -> common_pb2.Experiment | None:
    found = candidates(experiments) or ranked(experiments)
    return found[0] if found else None


def counts(experiments: Iterable[common_pb2.Experiment]) -> dict[str, int]:
    result: dict[str, int] = {}
    for e in experiments:
        result[status_name(e.status)] = result.get(status_name(e.status), 0) + 1
    return result


def short_id(e: common_pb2.Experiment) -> str:
    """`RUN.c0003.1` -> `c0003.1`: discover's ids repeat the run id, which every view already names."""
    return e.id.removeprefix(f"{e.run_id}.") if e.run_id else e.id


def optional(message: Any, field: str) -> float | None:
    return getattr(message, field) if message.HasField(field) else None


def leaderboard_row(rank: int, e: common_pb2.Experiment, names: dict[str, str]) -> dict[str, Any]:
    metrics, fitness = e.evaluation.metrics, e.fitness
    parent = e.parent_ids[0] if e.parent_ids else ""
    return {
        "rank": rank,
        "id": e.id,
        "short_id": short_id(e),
        "name": e.name,
        "cycle": e.cycle,
        "fitness": fitness.total,
        "loss_score": fitness.loss_score,
        "benchmark_score": fitness.benchmark_score,
        "judge_score": fitness.judge_score,
        "val_loss": optional(metrics, "val_loss"),
        "mqar_mean": mean_mqar(e),
        "layer_parameters": optional(metrics, "layer_parameters"),
        "parent_id": parent,
        "parent_name": names.get(parent, parent),
        "status": status_name(e.status),
        "is_baseline": e.is_baseline,
        "reference_only": e.proposal.reference_only,
        "breakthrough": e.analysis.breakthrough,
    }


def human_count(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
