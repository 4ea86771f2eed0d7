"""What `discover` shows while it works.

On a terminal: a run-level bar (cycle i of N, or the time left of a --time-budget; the best confirmed
improvement so far; an ETA from the cycles' measured wall times) above a bar per evaluation (stage, step,
loss). Everywhere (logs and CI included): one line per finished experiment and one per finished cycle with
the same run-level facts. The run-level facts come from the run's stats.json (the loop's own measurement
of each cycle), so a resumed run's estimate includes the cycles of earlier invocations.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from asiarch.common import contract
from asiarch.v1 import common_pb2

# The ETA averages the most recent cycles: the first ones (baselines aside) are often unlike the rest.
ETA_WINDOW = 5


class RichDisplay:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        if not self.console.is_terminal:  # logs and CI: wide enough for the leaderboard's columns
            self.console = Console(width=160)
        self.bars = Progress(
            TextColumn("{task.description:<40}"),
            TextColumn("{task.fields[stage]:<18}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}
        self.losses: dict[str, str] = {}
        self.run_bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[facts]}"),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self.run_task: TaskID | None = None
        self.live = Live(Group(self.run_bar, self.bars), console=self.console, transient=True)

    def __enter__(self) -> RichDisplay:
        if self.console.is_terminal:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live.is_started:
            self.live.stop()

    def run_progress(self, line: RunLine) -> None:
        """The run-level facts: the bar on a terminal, a plain line everywhere."""
        facts = line.facts()
        if self.run_task is None:
            self.run_task = self.run_bar.add_task("run", total=line.planned, facts=facts)
        self.run_bar.update(self.run_task, completed=line.cycle, total=line.planned, facts=facts)
        self.console.print(f"[bold]›[/bold] {line.text()}", highlight=False)

    def note(self, message: str) -> None:
        self.console.print(f"[bold]›[/bold] {message}")

    def started(self, key: str, label: str) -> None:
        self.tasks[key] = self.bars.add_task(label[:40], total=None, stage="queued", loss="–")

    def progress(self, key: str, event: Any) -> None:
        task = self.tasks.get(key)
        if task is None:
            return
        if event.HasField("loss"):
            self.losses[key] = f"{event.loss:.3f}"
        self.bars.update(
            task,
            completed=event.step,
            total=event.total_steps or None,
            stage=contract.stage_label(event.stage),
            loss=self.losses.get(key, "–"),
        )

    def finished(self, key: str, experiment: common_pb2.Experiment) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            self.bars.remove_task(task)
        metrics = experiment.evaluation.metrics
        if experiment.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED:
            mqar = [b.score for b in metrics.benchmarks]
            summary = (
                f"fitness {experiment.fitness.total:.3f}  val_loss {metrics.val_loss:.4f}"
                + (f"  MQAR {sum(mqar) / len(mqar):.3f}" if mqar else "")
                + ("  [bold green]breakthrough[/]" if experiment.analysis.breakthrough else "")
            )
        else:
            reason = (
                experiment.evaluation.failure_reason.splitlines()[0][:100]
                if experiment.evaluation.failure_reason
                else "failed"
            )
            summary = f"[red]failed[/red]: {reason}"
        repairs = len(experiment.evaluation.repairs)
        self.console.print(
            f"  {experiment.name[:36]:<36} {summary}" + (f"  ({repairs} repair(s))" if repairs else ""),
            highlight=False,
        )


def _duration(seconds: float) -> str:
    seconds = max(0, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class RunLine:
    """Where a run stands after a cycle."""

    cycle: int  # the cycle just finished (cycles count from 1 over the whole run)
    planned: int | None  # --cycles; None under a time budget alone
    cycle_seconds: Sequence[float]  # the wall time of each finished cycle, oldest first
    best_confirmed: float | None  # nats/token over the strongest baseline; None: nothing confirmed yet
    time_left: float | None = None  # seconds of a --time-budget left

    def seconds_left(self) -> float | None:
        """The ETA: the mean of the last ETA_WINDOW cycles times the cycles left, capped by the time
        budget's remainder."""
        if not self.cycle_seconds:
            return self.time_left
        per_cycle = statistics.fmean(self.cycle_seconds[-ETA_WINDOW:])
        estimate = None if self.planned is None else max(0, self.planned - self.cycle) * per_cycle
        if self.time_left is None:
            return estimate
        return self.time_left if estimate is None else min(estimate, self.time_left)

    def facts(self) -> str:
        best = (
            "none confirmed yet" if self.best_confirmed is None else f"{self.best_confirmed:+.4f} nats/token"
        )
        left = self.seconds_left()
        eta = "" if left is None else f" · about {_duration(left)} left"
        return f"best confirmed {best}{eta}"

    def text(self) -> str:
        of = f" of {self.planned}" if self.planned is not None else ""
        took = f" in {_duration(self.cycle_seconds[-1])}" if self.cycle_seconds else ""
        return f"cycle {self.cycle}{of} done{took}; {self.facts()}"


class RunProgress:
    """The discover command's `on_cycle` hook that keeps the run-level line: reads the run's stats.json
    (written by the loop before the hook runs) after every cycle."""

    def __init__(self, display: RichDisplay, options: Any) -> None:
        self.display, self.options = display, options
        self.started = time.monotonic()

    def line(self, cycle: int) -> RunLine:
        from asiarch.orchestrator.stats import RunStats

        options = self.options
        cycles = []
        if options.run_dir is not None and Path(options.run_dir).exists():
            stats = RunStats.load(
                options.run_dir, options.run_id, options.strategy, options.budget, options.parallel
            )
            latest = {c.cycle: c for c in stats.cycles}  # a cycle run again after a stop: its last entry
            cycles = [latest[k] for k in sorted(latest)]
        budget = options.time_budget_minutes
        return RunLine(
            cycle=cycle,
            planned=options.cycles,
            cycle_seconds=[c.wall_seconds for c in cycles],
            best_confirmed=cycles[-1].best_confirmed_improvement if cycles else None,
            time_left=None if budget is None else budget * 60 - (time.monotonic() - self.started),
        )

    async def cycle_done(self, cycle: int, _proposed: dict[str, int]) -> None:
        self.display.run_progress(self.line(cycle))
