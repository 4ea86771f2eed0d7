"""The measured run-to-run noise of each budget: how large a difference must be to mean anything.

`noise_floor.json` beside this module is written by `asiarch baselines --seeds N` and never by hand: for
each budget preset and rung, every baseline's validation loss and mean benchmark accuracy over N seeds
(model initialisation and data order), and the pooled standard deviations the fitness divides by. A
budget that was never measured gets an assumed floor whose `source` says so; nothing pretends to be a
measurement that is not.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("noise_floor.json")
# Below these an sd is a rounding artefact of too few seeds, not a noise floor: MQAR accuracy is counted
# over a few hundred queries, so one query is ~0.005.
MIN_LOSS_SD = 1e-3
MIN_BENCHMARK_SD = 5e-3
# Unmeasured budgets: 1 % of the reference loss and 2 accuracy points, as stated in `source`.
ASSUMED_RELATIVE_LOSS_SD = 0.01
ASSUMED_BENCHMARK_SD = 0.02


@dataclass(frozen=True)
class NoiseFloor:
    """Standard deviations over seeds of one evaluation's validation loss and mean benchmark accuracy."""

    val_loss_sd: float
    benchmark_sd: float
    source: str


def key(preset: str, rung: int) -> str:
    return f"{preset}/rung{max(1, rung)}"


def _table(path: Path = TABLE) -> dict[str, Any]:
    # Read on every score (and a rescore scores the whole run): parsed once per version of the file.
    return _parsed(path, path.stat().st_mtime_ns) if path.exists() else {}


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, mtime_ns: int) -> dict[str, Any]:
    return json.loads(path.read_text())


def noise_floor(preset: str, rung: int, reference_loss: float, path: Path = TABLE) -> NoiseFloor:
    """The measured floor of (preset, rung), else the assumed one for a reference loss of `reference_loss`."""
    entry = _table(path).get(key(preset, rung))
    if entry is not None:
        return NoiseFloor(
            val_loss_sd=max(MIN_LOSS_SD, entry["val_loss_sd"]),
            benchmark_sd=max(MIN_BENCHMARK_SD, entry["benchmark_sd"]),
            source=(
                f"measured: {key(preset, rung)}, {entry['seeds']} seeds x {len(entry['baselines'])} baselines"
            ),
        )
    return NoiseFloor(
        val_loss_sd=max(MIN_LOSS_SD, ASSUMED_RELATIVE_LOSS_SD * reference_loss),
        benchmark_sd=ASSUMED_BENCHMARK_SD,
        source=(
            f"assumed: {key(preset, rung)} was never measured "
            f"(asiarch baselines --seeds 5 --budget {preset}); "
            f"sd = {ASSUMED_RELATIVE_LOSS_SD:.0%} of the reference loss and {ASSUMED_BENCHMARK_SD} accuracy"
        ),
    )


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def pooled_sd(groups: Sequence[Sequence[float]]) -> float:
    """The within-group sd pooled over groups (each baseline is one group; their means differ)."""
    squares = sum(sum((v - statistics.fmean(g)) ** 2 for v in g) for g in groups if len(g) > 1)
    freedom = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(squares / freedom) if freedom else 0.0


def summarise(
    preset: str, rung: int, measured: Mapping[str, Sequence[tuple[float, float]]], seeds: int
) -> dict[str, Any]:
    """The table entry for (preset, rung) from {baseline: [(val_loss, mean benchmark) per seed]}."""
    baselines = {}
    for name, runs in measured.items():
        loss_mean, loss_sd = mean_sd([loss for loss, _ in runs])
        bench_mean, bench_sd = mean_sd([bench for _, bench in runs])
        baselines[name] = {
            "val_loss_mean": loss_mean,
            "val_loss_sd": loss_sd,
            "benchmark_mean": bench_mean,
            "benchmark_sd": bench_sd,
            "runs": len(runs),
        }
    return {
        "preset": preset,
        "rung": rung,
        "seeds": seeds,
        "val_loss_sd": pooled_sd([[loss for loss, _ in runs] for runs in measured.values()]),
        "benchmark_sd": pooled_sd([[bench for _, bench in runs] for runs in measured.values()]),
        "baselines": baselines,
    }


def write_entry(entry: dict[str, Any], path: Path = TABLE) -> None:
    """Add or replace one (preset, rung) entry, keeping the others."""
    table = dict(_table(path))  # the parsed table is cached: never change it in place
    table[key(entry["preset"], entry["rung"])] = entry
    path.write_text(json.dumps(dict(sorted(table.items())), indent=2, sort_keys=True) + "\n")
