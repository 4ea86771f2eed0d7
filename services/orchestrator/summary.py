"""The end of a `discover` run: the leaderboard on the console and the HTML report on disk, read from
the run's analyst while it is still up."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

TOP = 15


async def print_and_report(analyst_address: str, run_dir: Path, console: Console) -> Path:
    from asiarch.orchestrator.results import report
    from asiarch.orchestrator.results import summary as rows
    from asiarch.orchestrator.results.fetch import load_run
    from asiarch.orchestrator.results.tables import leaderboard_table

    data = await load_run(run_dir, analyst_address)
    ranked = rows.ranked(data.experiments, include_all=False)
    table = [rows.leaderboard_row(i, e, data.names) for i, e in enumerate(ranked, 1)][:TOP]
    console.print(leaderboard_table(table, f"Leaderboard of run {data.info.run_id}"))
    console.print(f"finding: {rows.verdict(data.experiments)}")
    path = report.write(data, run_dir / "report.html")
    console.print(f"report: {path.resolve()}")
    return path
