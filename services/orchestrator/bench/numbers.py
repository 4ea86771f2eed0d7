"""The discovery benchmark's numbers, from the files its runs leave: pure (no services, no clock).

A run of `asiarch bench discovery` leaves two files in its directory: `stats.json`, which the loop writes
after each cycle (its schema and reader: asiarch.orchestrator.stats), and `bench.json`, which the benchmark
writes itself (`{"cpu_seconds": {"<cycle>": float}, "wall_seconds": float}`: the CPU time it measured per
cycle, used for the cycles whose `cpu_seconds` the loop left null, and the run's wall time, baselines
included).

What this module guarantees: a strategy's numbers are means ± sample sd over its finished runs (every
planned cycle done), so strategies are compared on runs of the same length; a run stopped midway counts as
started, not done. A cycle run again after a resume counts once (its last entry). A run without a
confirmed improvement counts 0 towards the best improvement. A rate whose denominator is 0 is unknown,
never 0. The headline names the strategy with the largest mean best confirmed improvement and says
whether it beats the random control by more than the spread (the two sds added).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asiarch.orchestrator.stats import STATS_FILE, CycleStats, RunStats

MEASURED_FILE = "bench.json"
CONTROL = "random"


@dataclass(frozen=True)
class BenchRun:
    """One run of one strategy: its cycles in order and what the benchmark measured of it."""

    strategy: str
    index: int
    cycles: tuple[CycleStats, ...]
    measured_cpu: Mapping[int, float] = field(default_factory=dict)
    wall_seconds: float | None = None

    @property
    def cycles_done(self) -> int:
        return len(self.cycles)

    @property
    def cpu_seconds(self) -> float | None:
        """The loop's CPU seconds per cycle, else the benchmark's; None when a cycle has neither."""
        per_cycle = [
            c.cpu_seconds if c.cpu_seconds is not None else self.measured_cpu.get(c.cycle)
            for c in self.cycles
        ]
        return None if None in per_cycle else sum(x for x in per_cycle if x is not None)

    @property
    def whole_cpu_seconds(self) -> float | None:
        """The whole run's CPU seconds, baselines included: the benchmark's measurement, else the loop's."""
        return sum(self.measured_cpu.values()) if self.measured_cpu else self.cpu_seconds

    @property
    def whole_wall_seconds(self) -> float:
        """The whole run's wall seconds, baselines included: the benchmark's measurement, else the loop's."""
        return self.wall_seconds if self.wall_seconds is not None else self.total("wall_seconds")

    def best_curve(self) -> list[float]:
        """The best confirmed improvement so far after each cycle; 0 until the first is found."""
        best, curve = 0.0, []
        for c in self.cycles:
            if c.best_confirmed_improvement is not None:
                best = max(best, c.best_confirmed_improvement)
            curve.append(best)
        return curve

    @property
    def found(self) -> bool:
        return any(c.best_confirmed_improvement is not None for c in self.cycles)

    def total(self, name: str) -> float:
        return sum(getattr(c, name) for c in self.cycles)


def read_run(run_dir: Path, strategy: str, index: int) -> BenchRun | None:
    """The run in `run_dir` (None before its first cycle is recorded); ValueError for a stats.json of
    another schema version."""
    if not (run_dir / STATS_FILE).exists():
        return None
    stats = RunStats.load(run_dir, run_id="", strategy=strategy, budget="", parallel=0)
    by_number = {c.cycle: c for c in stats.cycles}  # the last entry of a cycle run again wins
    measured = read_measured(run_dir)
    return BenchRun(
        strategy=strategy,
        index=index,
        cycles=tuple(by_number[n] for n in sorted(by_number)),
        measured_cpu={int(k): float(v) for k, v in measured.get("cpu_seconds", {}).items()},
        wall_seconds=measured.get("wall_seconds"),
    )


def read_measured(run_dir: Path) -> dict[str, Any]:
    """The run's bench.json ({} before the benchmark measured anything)."""
    path = run_dir / MEASURED_FILE
    return json.loads(path.read_text()) if path.exists() else {}


# --- aggregation ---


@dataclass(frozen=True)
class Spread:
    """Mean ± sample sd of the known values; sd None below two values, mean None with none."""

    mean: float | None
    sd: float | None
    n: int

    def text(self, fmt: str = ".3g") -> str:
        if self.mean is None:
            return "–"
        return f"{self.mean:{fmt}}" + (f" ± {self.sd:{fmt}}" if self.sd is not None else "")


def spread(values: Iterable[float | None]) -> Spread:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return Spread(
        mean=statistics.fmean(known) if known else None,
        sd=statistics.stdev(known) if len(known) >= 2 else None,
        n=len(known),
    )


def ratio(numerator: float, denominator: float | None) -> float | None:
    return numerator / denominator if denominator else None


# Per-run values the table averages, each None when the run cannot say.
PER_RUN: dict[str, Callable[[BenchRun], float | None]] = {
    "valid_rate": lambda r: ratio(r.total("valid"), r.total("evaluated")),
    "duplicate_rate": lambda r: ratio(r.total("duplicates"), r.total("proposals")),
    "best": lambda r: r.best_curve()[-1] if r.cycles else None,
    "confirmed_per_cpu_hour": lambda r: ratio(
        r.total("confirmed"), None if r.cpu_seconds is None else r.cpu_seconds / 3600
    ),
    "wall_per_cycle": lambda r: ratio(r.total("wall_seconds"), r.cycles_done),
    "outside_engineer": lambda r: (
        None
        if not r.total("wall_seconds")
        else max(0.0, 1 - r.total("engineer_seconds") / r.total("wall_seconds"))
    ),
}


@dataclass(frozen=True)
class StrategyRow:
    """A strategy's line of the table: spreads over its finished runs."""

    strategy: str
    started: int
    done: int
    found: int  # finished runs with a confirmed improvement
    values: Mapping[str, Spread]

    def __getitem__(self, name: str) -> Spread:
        return self.values[name]


def strategy_row(strategy: str, runs: Sequence[BenchRun], cycles: int) -> StrategyRow:
    finished = [r for r in runs if r.strategy == strategy and r.cycles_done >= cycles]
    return StrategyRow(
        strategy=strategy,
        started=sum(1 for r in runs if r.strategy == strategy),
        done=len(finished),
        found=sum(1 for r in finished if r.found),
        values={name: spread(value(r) for r in finished) for name, value in PER_RUN.items()},
    )


def strategy_rows(runs: Sequence[BenchRun], strategies: Sequence[str], cycles: int) -> list[StrategyRow]:
    """One row per strategy, the random control last."""
    ordered = [s for s in strategies if s != CONTROL] + [s for s in strategies if s == CONTROL]
    return [strategy_row(s, runs, cycles) for s in ordered]


def best_by_cycle(runs: Sequence[BenchRun], strategy: str) -> list[float]:
    """The mean over the strategy's runs of the best confirmed improvement so far after each cycle (at a
    cycle, over the runs that reached it)."""
    curves = [r.best_curve() for r in runs if r.strategy == strategy]
    length = max((len(c) for c in curves), default=0)
    return [statistics.fmean(c[i] for c in curves if len(c) > i) for i in range(length)]


# --- the headline ---


def headline(rows: Sequence[StrategyRow]) -> str:
    """Which strategy wins on the best confirmed improvement, by how much, with what spread."""
    contenders = [r for r in rows if r.strategy != CONTROL and r.done]
    control = next((r for r in rows if r.strategy == CONTROL and r.done), None)
    if not contenders:
        return "No strategy has a finished run yet."
    if not any(r.found for r in rows):
        runs = sum(r.done for r in rows)
        said = f"No run found a confirmed improvement over the strongest baseline ({runs} finished runs)"
        return said + (": no strategy beats random beyond the spread." if control else ".")
    # Ties on the improvement (all 0 but one run) go to the one that confirmed more per CPU-hour.
    winner = max(contenders, key=lambda r: (r["best"].mean or 0.0, r["confirmed_per_cpu_hour"].mean or 0.0))
    if control is None:
        return (
            f"{winner.strategy} leads ({winner['best'].text()} over {winner.done} run(s)); "
            "the random control has no finished run to compare with."
        )
    return _against_control(winner, control)


def _against_control(winner: StrategyRow, control: StrategyRow) -> str:
    best, chance = winner["best"], control["best"]
    margin = (best.mean or 0.0) - (chance.mean or 0.0)
    said = f"{winner.strategy} ({best.text()} over {best.n} run(s), {winner.found} with one)"
    against = f"random's {chance.text()} over {chance.n} run(s)"
    if best.sd is None or chance.sd is None:
        return f"{said} against {against}: {margin:+.3g}; with one run each the spread is unknown."
    width = best.sd + chance.sd
    if margin > width:
        return (
            f"{winner.strategy} wins: {best.text()} against {against}, ahead by {margin:.3g}, "
            f"beyond the spread ({width:.3g}, the two sds added)."
        )
    return (
        f"No strategy beats random beyond the spread: the best, {said}, is {margin:+.3g} against {against}, "
        f"within the two sds added ({width:.3g})."
    )
