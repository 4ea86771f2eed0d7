"""Numbers and labels derived from Experiments, shared by the tables, plots, report and export."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from asiarch.v1 import common_pb2

BREAKTHROUGH = "★"
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
    """The best confirmed design, or None: an exploratory rank alone is not a result."""
    confirmed = [e for e in candidates(experiments) if e.confirmation.confirmed]
    return confirmed[0] if confirmed else None


def confirmation_counts(experiments: Iterable[common_pb2.Experiment]) -> dict[str, int]:
    designs = [e for e in experiments if not e.is_baseline and e.status == SUCCEEDED]
    return {
        "promising": sum(e.analysis.promising for e in designs),
        "tested": sum(bool(e.confirmation.against_id) for e in designs),
        "confirmed": sum(e.confirmation.confirmed for e in designs),
    }


def verdict(experiments: Sequence[common_pb2.Experiment]) -> str:
    """One sentence on what the run found: the best confirmed design, or plainly that none was confirmed."""
    found = best(experiments)
    n = confirmation_counts(experiments)
    if found is not None:
        c = found.confirmation
        return (
            f"{found.name} ({short_id(found)}), confirmed against {c.against_name}: val_loss "
            f"{c.val_loss_mean:.4f} ± {c.val_loss_sd:.4f} vs {c.against_val_loss_mean:.4f} ± "
            f"{c.against_val_loss_sd:.4f} over {len(c.pairs)} seeds, one-sided p = {c.p_value:.3g} "
            f"({n['confirmed']} of {n['tested']} tested confirmed)"
        )
    return (
        f"no confirmed result: {n['promising']} design(s) led the strongest baseline beyond the noise in "
        f"exploration, {n['tested']} tested on paired seeds, none confirmed"
    )


def confirmation_cell(e: common_pb2.Experiment) -> str:
    """Mean ± sd over the replicates with the mark, "due" when a test is owed, "" otherwise."""
    c = e.confirmation
    if c.against_id and c.pairs:
        mark = f"{BREAKTHROUGH} confirmed" if c.confirmed else "not confirmed"
        return f"{mark} {c.val_loss_mean:.4f} ± {c.val_loss_sd:.4f} (n={len(c.pairs)}, p={c.p_value:.2g})"
    if c.against_id:
        return "not confirmed (no paired seeds)"
    return "confirmation due" if e.analysis.promising else ""


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
        "confirmation": confirmation_cell(e),
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
