"""What `discover` shows while it works: a rich progress bar per evaluation (stage, step, loss) on a
terminal, one line per finished experiment everywhere (logs and CI included)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from asiarch.common import contract
from asiarch.v1 import common_pb2


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

    def __enter__(self) -> RichDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

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
