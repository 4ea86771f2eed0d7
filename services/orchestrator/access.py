"""Where a run lives and how to reach its analyst: shared by `discover` and the results commands.

A run directory (`runs/<run-id>/` by default) holds everything a local run
writes: `store/` and `qdrant/` (the analyst's embedded stores), `logs/` (one
file per local service), `run.json` (the run's metadata, below) and
`report.html`. The run id is the directory's name unless `--run-id` says
otherwise (it is recorded in `run.json`).

`run.json`:
    {"run_id": str, "state": "running" | "finished" | "stopped" | "failed",
     "started_at": ISO-8601, "updated_at": ISO-8601, "pid": int,
     "cycles_done": int, "cycles_planned": int | null, "time_budget_minutes": float | null,
     "options": {"strategy", "mode", "llm", "budget", "precision", "seed", "parallel"},
         (mode: what was asked for after defaults: null = the researcher chose; llm: null when nothing
          started here uses an LLM; precision: null = the budget preset's default, and each evaluation's
          budget records the precision that ran)
     "proposed": {origin: count} (how the candidates were actually produced, e.g. {"dsl_mutation": 2}),
     "services": {"selector": addr, "researcher": addr, "engineer": [addr, ...], "analyst": addr},
     "local_services": [names started by this run], "local_pids": {name: pid at start},
     "message": str}
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from asiarch.common.client import open_channel
from asiarch.common.config import load_settings
from asiarch.orchestrator.config import OrchestratorSettings

DEFAULT_RUNS = Path("runs")
RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path
    run_id: str
    metadata: dict[str, Any]


def read_run(run_dir: Path) -> RunInfo:
    """The run's metadata; a directory without run.json is a run named after the directory."""
    path = run_dir / RUN_FILE
    metadata: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return RunInfo(run_dir, str(metadata.get("run_id") or run_dir.resolve().name), metadata)


def write_run(run_dir: Path, metadata: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_dir / f".{RUN_FILE}.tmp"
    temporary.write_text(json.dumps(metadata, indent=2, sort_keys=True))
    temporary.replace(run_dir / RUN_FILE)  # atomic: a reader never sees half a file


def latest_run(runs: Path = DEFAULT_RUNS) -> Path | None:
    """The most recently updated run directory under `runs`."""
    candidates = [p for p in runs.glob("*") if (p / RUN_FILE).exists()] if runs.exists() else []
    return max(candidates, key=lambda p: (p / RUN_FILE).stat().st_mtime, default=None)


def choose_run_dir(given: Path | None, run_id: str | None, resume: bool) -> Path:
    """--run-dir; else, with --resume, the latest run under runs/; else runs/<--run-id>, else
    runs/run-<UTC time>."""
    if given is not None:
        return given
    if resume:
        latest = latest_run(DEFAULT_RUNS)
        if latest is None:
            raise SystemExit("asiarch discover --resume: no run under runs/ to resume; give --run-dir")
        return latest
    return DEFAULT_RUNS / (run_id or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S"))


def live_analyst(run_dir: Path) -> str | None:
    """The analyst of a `discover` still running on this directory, if any."""
    metadata = read_run(run_dir).metadata
    pid = metadata.get("pid")
    if metadata.get("state") != "running" or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    address = metadata.get("services", {}).get("analyst")
    return address if isinstance(address, str) else None


@contextlib.asynccontextmanager
async def analyst_channel(
    run_dir: Path, address: str | None = None, say: Callable[[str], None] | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the run's analyst: `address` (or ASIARCH_ANALYST_ADDRESS) when given, else a local
    analyst started on the run directory's embedded stores for the duration of the block.

    The local analyst is a reader: it loads no embedding model and opens no vector store (the results
    commands only list and get experiments), so it is serving in about a second; `say` is told
    while it starts (a spinner's message). While `discover` runs locally, the results commands
    talk to its analyst (the address is in run.json) instead of starting a second one on the same
    stores.
    """
    settings = load_settings(OrchestratorSettings)
    address = address or settings.analyst_address or live_analyst(run_dir)
    token = settings.token
    if address:
        async with open_channel(address, auth_token=token) as channel:
            yield channel
        return
    from asiarch.common.llm.factory import Backend
    from asiarch.common.local import local_service

    env = {
        "ASIARCH_RUN_DIR": str(run_dir),
        "ASIARCH_ANALYST_INGEST_BUILTIN": "false",
        # The results commands only read experiments: no embedding model, no Qdrant (seconds saved).
        "ASIARCH_ANALYST_PRELOAD_VECTORS": "false",
        "ASIARCH_LLM_BACKEND": Backend.NONE.value,
    }
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    if say is not None:
        say(f"starting a local analyst on {run_dir}…")
    async with (
        local_service("analyst", env=env, log_path=run_dir / "logs" / "analyst-reader.log") as local,
        open_channel(local, auth_token=token) as channel,
    ):
        yield channel
