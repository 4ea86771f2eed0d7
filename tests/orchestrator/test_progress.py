"""The run-level line `discover` shows after each cycle: cycle i of N (or the time left), the best confirmed
improvement so far, and an ETA from the cycles' measured wall times (asiarch.orchestrator.progress)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from asiarch.orchestrator.loop import Options
from asiarch.orchestrator.progress import RichDisplay, RunLine, RunProgress
from asiarch.orchestrator.stats import CycleStats, RunStats


def test_the_eta_is_the_recent_cycles_mean_times_the_cycles_left() -> None:
    line = RunLine(cycle=3, planned=10, cycle_seconds=[100.0, 30.0, 30.0], best_confirmed=None)
    assert line.seconds_left() == 7 * (160 / 3)
    # Only the last five cycles count: a slow first cycle (baselines, warm-up) stops weighing.
    later = RunLine(cycle=6, planned=10, cycle_seconds=[600.0, 20, 20, 20, 20, 20], best_confirmed=0.01)
    assert later.seconds_left() == 4 * 20
    assert later.text() == (
        "cycle 6 of 10 done in 20 s; best confirmed +0.0100 nats/token · about 1 min 20 s left"
    )


def test_a_time_budget_caps_the_eta_and_alone_gives_the_time_left() -> None:
    capped = RunLine(cycle=1, planned=100, cycle_seconds=[60.0], best_confirmed=None, time_left=300.0)
    assert capped.seconds_left() == 300.0
    alone = RunLine(cycle=2, planned=None, cycle_seconds=[60.0, 60], best_confirmed=None, time_left=4000)
    assert alone.text() == (
        "cycle 2 done in 1 min 00 s; best confirmed none confirmed yet · about 1 h 06 min left"
    )


def test_the_line_reads_the_runs_stats_and_is_printed_plainly_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = RunStats("r", "asi-arch", "smoke", 1)
    for cycle, seconds, best in [(1, 40.0, None), (2, 20.0, 0.03), (2, 30.0, 0.03)]:  # cycle 2 ran twice
        stats.append(CycleStats(cycle, 0.0, wall_seconds=seconds, best_confirmed_improvement=best), tmp_path)
    display = RichDisplay(Console(force_terminal=False))
    options = Options(run_id="r", cycles=4, budget="smoke", run_dir=tmp_path)
    line = RunProgress(display, options).line(2)
    assert list(line.cycle_seconds) == [40.0, 30.0] and line.best_confirmed == 0.03
    display.run_progress(line)
    printed = capsys.readouterr().out
    assert "cycle 2 of 4 done in 30 s; best confirmed +0.0300 nats/token · about 1 min 10 s left" in printed
