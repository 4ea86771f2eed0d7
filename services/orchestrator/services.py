"""The services a command of the orchestrator works with (`discover`, `confirm`, `import asi-arch`).

Each service is the one given by address (the command's flag, else `ASIARCH_<NAME>_ADDRESS`) or, when
none is, started here on 127.0.0.1 as a supervised `asiarch.common.local.LocalService` (restarted on its
port if it dies; log in `RUN_DIR/logs/<name>.log`) with the embedded stores in the run directory, and
stopped when the command ends. `services()` yields the stubs and the analyst's address, and tells
`save` (run.json) which services were started here, their pids and every address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asiarch.orchestrator.config import OrchestratorSettings, split_addresses

# How often a local service that keeps dying is started again before the run goes on without it.
MAX_RESTARTS = 5


@dataclass
class Addresses:
    """Where each service is: an address, None (start one here) or "" (none: not needed)."""

    analyst: str | None
    selector: str | None
    researcher: str | None
    engineer: list[str]

    @classmethod
    def given(cls, args: argparse.Namespace, settings: OrchestratorSettings) -> Addresses:
        """The command's flags, else the environment's; flags a command lacks count as not given."""
        engineers = getattr(args, "engineer", None)
        return cls(
            analyst=getattr(args, "analyst", None) or settings.analyst_address,
            selector=getattr(args, "selector", None) or settings.selector_address,
            researcher=getattr(args, "researcher", None) or settings.researcher_address,
            engineer=split_addresses(engineers) if engineers else settings.engineers,
        )


def local_env(llm: str | None) -> dict[str, str]:
    """What every service started here inherits: this environment, bound to 127.0.0.1, each on a port of
    its own, with `llm` as its LLM backend (None: the environment's)."""
    env = {**os.environ, "ASIARCH_HOST": "127.0.0.1"}
    env.pop("ASIARCH_PORT", None)
    if llm is not None:
        env["ASIARCH_LLM_BACKEND"] = llm
    return env


class _Starter:
    """Starts the services that are not given, each stopped when `stack` closes."""

    def __init__(
        self, stack: contextlib.AsyncExitStack, env: dict[str, str], run_dir: Path, display: Any
    ) -> None:
        self.stack, self.env, self.run_dir, self.display = stack, env, run_dir, display
        self.names: list[str] = []
        self.pids: dict[str, int] = {}

    async def start(self, name: str, env: dict[str, str]) -> str:
        from asiarch.common.local import LocalService

        logs = self.run_dir / "logs"
        service = LocalService(
            name,
            {**self.env, **env},
            logs / f"{name}.log",
            port_file=logs / f".{name}.port",
            restarts=MAX_RESTARTS,
        )
        self.stack.push_async_callback(service.stop)
        await service.start()
        self.names.append(name)
        self.pids[name] = service.process.pid if service.process else 0
        self.display.note(f"started a local {name} on {service.address} (log: {logs / name}.log)")
        return service.address

    async def missing(self, given: Addresses, parallel: int) -> None:
        """Start what `given` lacks, in the order each needs the one before; fill in its addresses."""
        absent = [name for name in ("analyst", "selector") if getattr(given, name) is None]
        if absent:
            self.display.note(f"starting local {', '.join(absent)} …")
        given.analyst, given.selector = await asyncio.gather(
            self._unless(given.analyst, "analyst", {"ASIARCH_RUN_DIR": str(self.run_dir)}),
            self._unless(given.selector, "selector", {}),
        )
        assert given.analyst is not None
        given.researcher = await self._unless(
            given.researcher, "researcher", {"ASIARCH_ANALYST_ADDRESS": given.analyst}
        )
        if not given.engineer:
            # A slot beside the loop's N trainings for its Validate calls, which check the next proposals
            # while those train (the loop itself keeps at most N Evaluate calls in flight).
            env = {"ASIARCH_ENGINEER_MAX_CONCURRENT": str(parallel + 1)}
            if given.researcher:
                env["ASIARCH_RESEARCHER_ADDRESS"] = given.researcher
            given.engineer = [await self.start("engineer", env)]

    async def _unless(self, address: str | None, name: str, env: dict[str, str]) -> str:
        return address if address is not None else await self.start(name, env)


@contextlib.asynccontextmanager
async def services(
    args: argparse.Namespace,
    settings: OrchestratorSettings,
    run_dir: Path,
    llm: str | None,
    display: Any,
    save: Callable[..., None],
    evaluation_only: bool = False,
) -> AsyncIterator[tuple[Any, str]]:
    """Stubs of the four services (see the module docstring) and the analyst's address. `evaluation_only`:
    the analyst and engineers alone (the engineer is then never asked for repairs)."""
    addresses = Addresses.given(args, settings)
    if evaluation_only:
        addresses.selector = addresses.researcher = ""  # neither is started, so no repair is ever asked for
    async with contextlib.AsyncExitStack() as stack:
        starter = _Starter(stack, local_env(llm), run_dir, display)
        save(local_services=starter.names, local_pids=starter.pids)
        await starter.missing(addresses, args.parallel)
        save(local_pids=starter.pids, services=asdict(addresses))
        assert addresses.analyst is not None
        yield await _stubs(stack, addresses, settings.token), addresses.analyst


async def _stubs(stack: contextlib.AsyncExitStack, addresses: Addresses, token: str | None) -> Any:
    """A stub per service on a channel that closes with `stack`; None for a service not needed."""
    from asiarch.common.client import open_channel
    from asiarch.orchestrator.loop import Stubs
    from asiarch.v1 import analyst_pb2_grpc, engineer_pb2_grpc, researcher_pb2_grpc, selector_pb2_grpc

    async def channel(address: str) -> Any:
        return await stack.enter_async_context(open_channel(address, auth_token=token))

    selector, researcher = addresses.selector, addresses.researcher
    return Stubs(
        selector=selector_pb2_grpc.SelectorStub(await channel(selector)) if selector else None,
        researcher=researcher_pb2_grpc.ResearcherStub(await channel(researcher)) if researcher else None,
        engineers=[engineer_pb2_grpc.EngineerStub(await channel(a)) for a in addresses.engineer],
        analyst=analyst_pb2_grpc.AnalystStub(await channel(addresses.analyst or "")),
    )
