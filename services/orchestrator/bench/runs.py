"""Running the discovery benchmark: R paired runs per strategy on services started once.

The four services are started once (asiarch.orchestrator.services: given by address, else local, with one
analyst store under the benchmark directory) and serve every run. Run `i` of strategy `S` is a
`Discovery` with run id `<bench-id>.<S>.r<i>` (the bench id is the benchmark directory's name), seed
`--seed + i` (the same seeds for every strategy) and run directory `DIR/<S>/r<i>`, where the loop writes
`stats.json`. Runs go round by round (r0 of every strategy, then r1, …), so a benchmark stopped early has
comparable runs of every strategy.

Resumable: a run whose stats.json holds every planned cycle is skipped; a run stopped midway is resumed
from the store (the loop's own resume: its ids are minted before any work). `DIR/plan.json` records what
makes the runs comparable (budget, base seed, confirmation seeds, LLM, mode, parallel): continuing with
other values is refused rather than mixed in.

CPU time: the loop's per-cycle `cpu_seconds` where it gives one; else the benchmark's own measurement,
taken after each cycle (bench.json): utime + stime + cutime + cstime of this process and every live
descendant (the local services; the engineer reaps its sandboxes, so their time is in its cutime/cstime),
the difference between two samples. Linux only (/proc); elsewhere it is unknown. Services given by
address are not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from asiarch.common.contract import EXPERIMENT_ID, EXPERIMENT_ID_RULE
from asiarch.common.errors import ConfigError
from asiarch.orchestrator.access import RunInfo
from asiarch.orchestrator.bench.numbers import MEASURED_FILE, BenchRun, read_measured, read_run
from asiarch.orchestrator.progress import RichDisplay

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Plan:
    """What the benchmark runs, from its options."""

    bench_dir: Path
    strategies: tuple[str, ...]
    runs: int
    cycles: int
    budget: str
    parallel: int
    confirm_seeds: int
    confirm_rung: int
    seed: int
    llm: str
    mode: str | None

    @property
    def bench_id(self) -> str:
        return self.bench_dir.resolve().name

    def run_id(self, strategy: str, index: int) -> str:
        return bench_run_id(self.bench_dir, strategy, f"r{index}")

    def run_dir(self, strategy: str, index: int) -> Path:
        return self.bench_dir / strategy / f"r{index}"

    def order(self) -> list[tuple[str, int]]:
        """Round by round: r0 of every strategy, then r1, …"""
        return [(strategy, index) for index in range(self.runs) for strategy in self.strategies]

    def fixed(self) -> dict[str, Any]:
        """What every run of one benchmark shares; cycles, runs and strategies may grow."""
        return {
            "budget": self.budget,
            "seed": self.seed,
            "confirm_seeds": self.confirm_seeds,
            "confirm_rung": self.confirm_rung,
            "llm": self.llm,
            "mode": self.mode,
            "parallel": self.parallel,
        }

    def check(self) -> None:
        """Refuse (ConfigError, before anything starts) run ids the contract would refuse and a directory
        that holds a benchmark made with other fixed values; record this plan's otherwise."""
        longest = self.run_id(max(self.strategies, key=len), self.runs - 1) + ".c0000.0.s00.r2"
        if EXPERIMENT_ID.fullmatch(longest) is None:
            raise ConfigError(
                f"argument --bench-dir: its name {self.bench_id!r} makes ids like {longest!r}, "
                f"which must be {EXPERIMENT_ID_RULE}"
            )
        path = self.bench_dir / PLAN_FILE
        recorded = json.loads(path.read_text()) if path.exists() else {}
        differ = {k: (v, self.fixed()[k]) for k, v in recorded.items() if self.fixed().get(k) != v}
        if differ:
            said = ", ".join(f"{k} {old!r} (now {new!r})" for k, (old, new) in differ.items())
            raise ConfigError(
                f"argument --bench-dir: {self.bench_dir} holds a benchmark made with {said}; "
                "give the same values to continue it, or another --bench-dir"
            )
        self.bench_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.fixed(), indent=2, sort_keys=True))


def run_seed(base_seed: int, index: int) -> int:
    """Run i of every strategy trains with seed --seed + i: paired runs across strategies."""
    return base_seed + index


def bench_run_id(bench_dir: Path, strategy: str, run: str) -> str:
    """`<bench-id>.<strategy>.<run>` (run: r0, r1, …), the bench id being the benchmark directory's name."""
    return f"{bench_dir.resolve().name}.{strategy}.{run}"


def benchmark_run(run_dir: Path) -> RunInfo | None:
    """A run of a benchmark (`DIR/<strategy>/r<i>`) as `asiarch confirm` takes a run: its id, the
    benchmark directory (whose `store/` and `qdrant/` hold every run's experiments) and the options of
    `DIR/plan.json` (budget, seed); None for a directory that is not one."""
    bench_dir = run_dir.parent.parent
    plan_file = bench_dir / PLAN_FILE
    if re.fullmatch(r"r\d+", run_dir.name) is None or not plan_file.is_file():
        return None
    fixed = json.loads(plan_file.read_text())
    run_id = bench_run_id(bench_dir, run_dir.parent.name, run_dir.name)
    options = {
        "budget": fixed["budget"],
        "seed": run_seed(fixed["seed"], int(run_dir.name[1:])),
        "precision": None,
    }
    return RunInfo(bench_dir, run_id, {"run_id": run_id, "options": options})


# --- CPU time ---


def descendants(pid: int) -> list[int]:
    """The live descendants of `pid` (Linux: /proc/<pid>/task/<tid>/children); [] elsewhere."""
    found, todo = [], [pid]
    while todo:
        for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                pids = [int(p) for p in children.read_text().split()]
            except OSError:  # that thread or process ended while we looked
                continue
            found += pids
            todo += pids
    return found


def tree_cpu_seconds(attempts: int = 3) -> float | None:
    """utime + stime + cutime + cstime, in seconds, of this process and its live descendants; None
    without /proc. A child that exits between two samples moves its time into its parent's
    cutime/cstime, so the difference of two samples counts it once. A child that exits while a sample is
    taken spoils it: it is taken again."""
    from asiarch.orchestrator.stats import cpu_seconds

    for _ in range(attempts):
        pid = os.getpid()
        seconds = cpu_seconds([pid, *descendants(pid)])
        if seconds is not None:
            return seconds
    return None


class Meter:
    """CPU seconds per cycle and the wall time of one run, kept in the run's bench.json (a resumed run
    adds to what an earlier invocation measured)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / MEASURED_FILE
        recorded = read_measured(run_dir)
        self.cpu: dict[str, float] = dict(recorded.get("cpu_seconds", {}))
        self.earlier_wall = float(recorded.get("wall_seconds", 0.0))
        self.started = time.monotonic()
        self.last = tree_cpu_seconds()

    async def cycle_done(self, cycle: int, _proposed: dict[str, int]) -> None:
        now = tree_cpu_seconds()
        if now is not None and self.last is not None:
            self.cpu[str(cycle)] = self.cpu.get(str(cycle), 0.0) + now - self.last
        self.last = now
        self.save()

    def save(self) -> None:
        wall = self.earlier_wall + time.monotonic() - self.started
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"cpu_seconds": self.cpu, "wall_seconds": wall}, indent=2))


# --- the runs ---


class RunDisplay(RichDisplay):
    """A run's progress bars on a terminal, and nothing else: the benchmark says one line per run."""

    def note(self, message: str) -> None:
        """The loop's notes of each run stay out of the benchmark's output (the services log theirs)."""

    def finished(self, key: str, experiment: Any) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            self.bars.remove_task(task)


@dataclass
class Bench:
    """The services every run uses: their stubs, and the pids of those started here (the loop measures
    each cycle's CPU time on them and on this process, which runs the loop)."""

    stubs: Any
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, **recorded: Any) -> None:
        """What asiarch.orchestrator.services reports (run.json's fields for discover): the pids kept."""
        self.pids.update(recorded.get("local_pids", {}))

    def options(self, plan: Plan, strategy: str, index: int) -> Any:
        from asiarch.orchestrator.loop import Options

        return Options(
            run_id=plan.run_id(strategy, index),
            cycles=plan.cycles,
            strategy=strategy,
            mode=plan.mode,
            budget=plan.budget,
            seed=run_seed(plan.seed, index),
            parallel=plan.parallel,
            confirm_seeds=plan.confirm_seeds,
            confirm_rung=plan.confirm_rung,
            run_dir=plan.run_dir(strategy, index),
            service_pids=(os.getpid(), *(pid for pid in self.pids.values() if pid)),
            # The runs train the same baselines (and often the same replicates) at the same seeds: each is
            # trained once in the benchmark and copied by the others (deterministic on a CPU).
            reuse_from=tuple(plan.run_id(s, i) for s, i in plan.order() if (s, i) != (strategy, index)),
        )


async def one_run(
    plan: Plan, strategy: str, index: int, bench: Bench, display: RunDisplay
) -> BenchRun | None:
    """Run (or finish) one run; its numbers afterwards."""
    from asiarch.orchestrator.loop import Discovery

    run_dir = plan.run_dir(strategy, index)
    meter = Meter(run_dir)
    options = bench.options(plan, strategy, index)
    try:
        with display:
            await Discovery(options, bench.stubs, display, on_cycle=meter.cycle_done).run()
    finally:
        meter.save()
    return read_run(run_dir, strategy, index)


def done(plan: Plan, strategy: str, index: int) -> BenchRun | None:
    """The run's numbers when it has every planned cycle (it is skipped), else None."""
    stats = read_run(plan.run_dir(strategy, index), strategy, index)
    return stats if stats is not None and stats.cycles_done >= plan.cycles else None


def collect(plan: Plan) -> list[BenchRun]:
    """Every run of the plan that has recorded a cycle."""
    found = (read_run(plan.run_dir(s, i), s, i) for s, i in plan.order())
    return [stats for stats in found if stats is not None]


def run_line(stats: BenchRun | None, strategy: str, index: int, skipped: bool) -> str:
    """The line the terminal gets for a finished (or skipped) run."""
    head = f"r{index} {strategy}"
    if stats is None:
        return f"{head}: no cycle recorded"
    cpu = "CPU unknown" if stats.cpu_seconds is None else f"{stats.cpu_seconds:.0f} s CPU"
    return (
        f"{head}: {'done before, skipped' if skipped else 'finished'}; {stats.cycles_done} cycle(s), "
        f"{stats.total('valid'):.0f}/{stats.total('evaluated'):.0f} valid, "
        f"{stats.total('duplicates'):.0f} duplicate(s), "
        f"{stats.total('confirmed'):.0f} of {stats.total('confirmations'):.0f} confirmation(s) confirmed, "
        f"best improvement {stats.best_curve()[-1] if stats.cycles else 0.0:.4g}; "
        f"{stats.total('wall_seconds'):.0f} s wall in cycles, {cpu}"
    )


async def run_all(
    plan: Plan, args: argparse.Namespace, console: Console, after_run: Callable[[Any], Awaitable[None]]
) -> None:
    """Every run of the plan not done yet, on services started once; `after_run(stubs)` after each run
    (and once when nothing is left to run, so that the page is still written). With `args.page_only`
    nothing is run: the page is written from what is measured so far (a stopped run counts as started)."""
    from asiarch.common.config import load_settings
    from asiarch.orchestrator.config import OrchestratorSettings
    from asiarch.orchestrator.services import services

    todo = []
    for strategy, index in plan.order():
        stats = done(plan, strategy, index)
        if stats is None and not args.page_only:
            todo.append((strategy, index))
        else:
            console.print(run_line(stats, strategy, index, skipped=True), highlight=False)
    settings = load_settings(OrchestratorSettings)
    bench = Bench(stubs=None)
    async with services(
        args, settings, plan.bench_dir, plan.llm, RichDisplay(console), bench.save
    ) as started:
        bench.stubs = started[0]
        display = RunDisplay(console)
        for strategy, index in todo:
            stats = await one_run(plan, strategy, index, bench, display)
            console.print(run_line(stats, strategy, index, skipped=False), highlight=False)
            await after_run(bench.stubs)
        if not todo:
            await after_run(bench.stubs)
