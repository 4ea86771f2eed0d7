"""`asiarch status`: run.json, plus counts and the best design from the analyst when one answers quickly.

The services run.json names are the run's, not necessarily anyone's now: while the run's
`discover` is alive each is asked for its health (alive or not answering); once the run is over
the ones it started are reported stopped (their recorded pids are checked), and the ones it was
given are not checked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Any

import grpc

from asiarch.common.errors import ServiceError
from asiarch.orchestrator.access import analyst_channel, live_analyst, read_run
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

from . import summary as s
from .progress import spinner

QUICK = 3.0  # seconds an RPC may take before the analyst counts as unreachable
HEALTH_TIMEOUT = 1.0  # seconds a service of a live run may take to answer its health check


def process_alive(pid: Any) -> bool | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _parse(value: Any) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def elapsed_seconds(metadata: dict[str, Any], now: dt.datetime | None = None) -> float | None:
    start = _parse(metadata.get("started_at"))
    if start is None:
        return None
    end = (
        (now or dt.datetime.now(dt.UTC))
        if metadata.get("state") == "running"
        else _parse(metadata.get("updated_at"))
    )
    return max(0.0, ((end or dt.datetime.now(dt.UTC)) - start).total_seconds())


async def _from_analyst(channel: grpc.aio.Channel, run_id: str, rpc_timeout: float) -> dict[str, Any]:
    stub = analyst_pb2_grpc.AnalystStub(channel)
    counts = {}
    for status in (1, 2, 3, 4):
        request = analyst_pb2.ListExperimentsRequest(run_id=run_id, statuses=[status], page_size=1)
        counts[s.status_name(status)] = (await stub.ListExperiments(request, timeout=rpc_timeout)).total
    request = analyst_pb2.ListExperimentsRequest(
        run_id=run_id,
        statuses=[common_pb2.EXPERIMENT_STATUS_SUCCEEDED],
        sort=analyst_pb2.EXPERIMENT_SORT_FITNESS_DESC,
        page_size=50,
    )
    leaders = (await stub.ListExperiments(request, timeout=rpc_timeout)).experiments
    best = s.best(leaders)
    return {
        "counts": counts,
        "total": sum(counts.values()),
        # Confirmed results only: an exploratory rank is not a finding (see `verdict`).
        "best": None
        if best is None
        else {"id": best.id, "name": best.name, "fitness": best.fitness.total, "cycle": best.cycle},
        "verdict": s.verdict(leaders),
    }


async def _serving(address: str) -> bool:
    """Whether the gRPC health check at `address` answers SERVING within HEALTH_TIMEOUT."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from asiarch.common.client import open_channel

    async with open_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT
            )
        except grpc.aio.AioRpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def service_states(meta: dict[str, Any], run_alive: bool) -> dict[str, str]:
    """name -> "alive" | "not answering" (run alive), "stopped" | "not checked" | "pid N still exists"."""
    services = meta.get("services") or {}
    local = set(meta.get("local_services") or [])
    pids = meta.get("local_pids") or {}
    if run_alive:
        names = list(services)
        addresses = [[a] if isinstance(a, str) else list(a) for a in services.values()]
        answers = await asyncio.gather(*(_serving(a) for group in addresses for a in group))
        states, i = {}, 0
        for name, group in zip(names, addresses, strict=True):
            alive = answers[i : i + len(group)]
            i += len(group)
            states[name] = (
                "alive"
                if all(alive)
                else "not answering"
                if not any(alive)
                else f"{sum(alive)} of {len(alive)} alive"
            )
        return states
    states = {}
    for name in services:
        if name not in local:
            states[name] = "not checked"  # given to the run by address: not the run's to stop
        elif process_alive(pids.get(name)):
            states[name] = f"pid {pids[name]} still exists"
        else:
            states[name] = "stopped"
    return states


async def gather(run_dir: Path, address: str | None, start_local: bool) -> dict[str, Any]:
    info = read_run(run_dir)
    meta = info.metadata
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "run_id": info.run_id,
        "state": meta.get("state", "unknown"),
        "cycles_done": meta.get("cycles_done"),
        "cycles_planned": meta.get("cycles_planned"),
        "time_budget_minutes": meta.get("time_budget_minutes"),
        "started_at": meta.get("started_at"),
        "updated_at": meta.get("updated_at"),
        "elapsed_seconds": elapsed_seconds(meta),
        "pid": meta.get("pid"),
        "process_alive": process_alive(meta.get("pid")),
        "options": meta.get("options", {}),
        "services": meta.get("services", {}),
        "local_services": meta.get("local_services", []),
        "message": meta.get("message", ""),
    }
    result["run_alive"] = result["state"] == "running" and result["process_alive"] is True
    result["service_states"] = await service_states(meta, result["run_alive"])
    address = address or os.environ.get("ASIARCH_ANALYST_ADDRESS") or live_analyst(run_dir)
    analyst: dict[str, Any] = {"address": address or ("local" if start_local else None), "reachable": False}
    if address or start_local:
        # A local reader reads the whole embedded store on its first call: give it longer.
        timeout = QUICK if address else 60.0
        try:
            with spinner(f"asking the analyst of run {info.run_id}…") as say:
                async with analyst_channel(run_dir, address, say) as channel:
                    analyst.update(await _from_analyst(channel, info.run_id, timeout), reachable=True)
        except grpc.aio.AioRpcError as exc:
            analyst["error"] = f"{exc.code().name}: {exc.details()}"
        except ServiceError as exc:
            analyst["error"] = str(exc)
    else:
        analyst["error"] = "no analyst running for this run (pass --analyst HOST:PORT or --local)"
    result["analyst"] = analyst
    return result


def render(status: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    planned = status["cycles_planned"]
    alive = status["process_alive"]
    if status["state"] == "running":
        process = {
            True: "alive",
            False: "not running: the run ended without saying so (killed or crashed)",
            None: "unknown",
        }[alive]
    else:  # the run is over: a pid still in use is another process by now, or discover exiting
        process = {True: "still exists", False: "exited", None: "unknown"}[alive]
    elapsed = status["elapsed_seconds"]
    budget = status["time_budget_minutes"]
    rows = [
        ("run", f"{status['run_id']}  ({status['run_dir']})"),
        ("state", str(status["state"])),
        (
            "cycles",
            f"{status['cycles_done'] if status['cycles_done'] is not None else '?'}"
            + (f" of {planned}" if planned else ""),
        ),
        (
            "elapsed",
            (s.duration(elapsed) if elapsed is not None else "?")
            + (f" (budget {budget:g} min)" if budget else ""),
        ),
        ("started", str(status["started_at"] or "?")),
        ("updated", str(status["updated_at"] or "?")),
        ("process", f"pid {status['pid']} {process}" if status["pid"] else "no pid recorded"),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(status["options"].items())) or "-"),
    ]
    services = []
    if status["services"] and not status["run_alive"]:
        why = "its discover is gone" if status["state"] == "running" else f"the run is {status['state']}"
        services.append(f"the run's services, as run.json recorded them ({why}):")
    for name, address in sorted(status["services"].items()):
        where = ", ".join(address) if isinstance(address, list) else str(address)
        state = status["service_states"].get(name, "unknown")
        services.append(
            f"{name:<11} {where} ({'local' if name in status['local_services'] else 'remote'}, {state})"
        )
    rows.append(("services", "\n".join(services) or "-"))
    if status["message"]:
        rows.append(("message", str(status["message"])))
    analyst = status["analyst"]
    if analyst["reachable"]:
        counts = ", ".join(f"{n} {k}" for k, n in analyst["counts"].items() if n) or "none yet"
        rows.append(("experiments", f"{analyst['total']} ({counts})"))
        rows.append(("best (confirmed)", analyst["verdict"]))
    else:
        rows.append(("analyst", f"not reachable: {analyst.get('error', '?')}"))
    for key, value in rows:
        table.add_row(key, Text(value))
    return table
