"""The end of a `discover` run: the leaderboard on the console and the HTML report on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2


async def print_and_report(channel: Any, run_dir: Path, console: Console) -> None:
    from asiarch.orchestrator.access import read_run

    run_id = read_run(run_dir).run_id
    stub = analyst_pb2_grpc.AnalystStub(channel)
    reply = await stub.ListExperiments(
        analyst_pb2.ListExperimentsRequest(
            run_id=run_id, statuses=[common_pb2.EXPERIMENT_STATUS_SUCCEEDED], page_size=10
        ),
        timeout=60,
    )
    table = Table(title=f"leaderboard of {run_id}")
    for column in ("rank", "name", "fitness", "val_loss", "parent"):
        table.add_column(column)
    names = {e.id: e.name for e in reply.experiments}
    for rank, e in enumerate(reply.experiments, 1):
        parent = e.parent_ids[0] if e.parent_ids else ""
        table.add_row(
            str(rank), e.name, f"{e.fitness.total:.3f}", f"{e.evaluation.metrics.val_loss:.4f}",
            names.get(parent, parent),
        )  # fmt: skip
    console.print(table)
