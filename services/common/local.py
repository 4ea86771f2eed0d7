"""Services as local subprocesses on 127.0.0.1: the one place that starts an `asiarch serve` child.

`LocalService` spawns `asiarch serve NAME` (on a free port, or on the port it had before), waits until its
health check says SERVING, logs its output to a file (appending, so a restart keeps the earlier lines) and
stops it with SIGTERM, then SIGKILL after a grace. With `restarts`, a service that dies (a crash, the OOM
killer, a test killing it) is started again on the same port (`RESTARTS`: asiarch.common.retry's policy,
1 s to 10 s apart), so that the channels its callers hold reconnect and their retries succeed: `asiarch
discover` supervises its local services so.

`local_service` is the one-shot form the commands that talk to a service use (`asiarch evaluate`, the
results commands, ...): with an address they connect to it; without one they run the service on a free
port for as long as the block lasts (stopped on exit and on Ctrl-C).

Every Python child starts with `python_command`: `-P` keeps the current directory off `sys.path`, so a
checkout's top-level folders (our `kernels/`) cannot shadow installed packages (Hugging Face's `kernels`,
which transformers imports) when a command is run from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asiarch.common.client import open_channel
from asiarch.common.errors import Unavailable
from asiarch.common.retry import Backoff, Policy

log = structlog.get_logger("asiarch.local")
START_TIMEOUT = 120.0


# Set in a local service's environment to the pid of the process that started it: the service asks the
# kernel for SIGTERM when that process dies (`stop_with_parent`), so a supervisor killed without warning
# (kill -9, the OOM killer) leaves no service running behind it. (The kernel watches the thread that
# started the child: LocalService spawns from the event loop's thread, which lives as long as the command.)
STOP_WITH_PARENT = "_ASIARCH_STOP_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """In a service started by LocalService (Linux): SIGTERM when the starting process dies; exits at once
    if it is already gone. Nothing elsewhere."""
    parent = os.environ.pop(STOP_WITH_PARENT, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def python_command(*args: str, isolated: bool = False) -> list[str]:
    """argv for a Python child of ours: never the current directory on sys.path.

    `isolated` (-I) also ignores PYTHON* variables and the user's site-packages; for
    children whose environment is scrubbed anyway (the sandbox).
    """
    return [sys.executable, "-I" if isolated else "-P", *args]


async def wait_serving(address: str, within: float = START_TIMEOUT) -> None:
    """Poll grpc.health.v1 until the server says SERVING."""
    deadline = asyncio.get_running_loop().time() + within
    async with open_channel(address) as channel:  # ASIARCH_TLS_* apply: the child inherits them
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"{address} did not report SERVING within {within:.0f} s")
            await asyncio.sleep(0.1)


class LocalService:
    """`asiarch serve NAME` on 127.0.0.1, logging to `log_path`; restarted up to `restarts` times when it
    exits while not being stopped (see the module docstring)."""

    def __init__(
        self, name: str, env: dict[str, str], log_path: Path, port_file: Path, restarts: int = 0
    ) -> None:
        self.name, self.env, self.log_path, self.port_file = name, env, log_path, port_file
        self.max_restarts, self.restarts = restarts, 0
        self.port = 0  # the first start takes a free port; a restart reuses it
        self.process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the service and return once it reports SERVING; Unavailable (naming the log) if it exits
        or does not within START_TIMEOUT."""
        await self._spawn()
        if self.max_restarts:
            self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.name}")

    async def stop(self, grace: float = 30) -> None:
        """SIGTERM (the service drains and exits), then SIGKILL if it is still there after `grace` s."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self.process is not None:
            await stop_process(self.process, grace)

    async def _spawn(self) -> None:
        self.port_file.unlink(missing_ok=True)  # a stale one would name the previous port
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *python_command("-m", "asiarch.common.cli", "serve", self.name, "--port", str(self.port)),
                "--port-file",
                str(self.port_file),
                stdout=log,
                stderr=log,
                env={**self.env, STOP_WITH_PARENT: str(os.getpid())},
            )
        try:
            self.port = await self._written_port(self.process)
            await wait_serving(self.address)
        except BaseException:
            await stop_process(self.process, grace=5)
            raise

    async def _written_port(self, process: asyncio.subprocess.Process) -> int:
        """The port the child writes once it listens (read only once complete)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(self.port_file.read_text())
            if process.returncode is not None or loop.time() > deadline:
                raise Unavailable(f"the local {self.name} did not start; see {self.log_path}")
            await asyncio.sleep(0.05)

    async def _watch(self) -> None:
        """Start the service again each time it exits, at most `max_restarts` times (see RESTARTS); stop()
        cancels this first, so a service being stopped is never started again."""
        restarts = dataclasses.replace(
            RESTARTS, attempts=self.max_restarts + 1, log=log.bind(service=self.name)
        )
        try:
            await restarts.call(self.name, self._restart, failed_first=await self._exit())
        except _Exited as exc:
            log.error("local service keeps dying; not restarting", service=self.name, exit_code=exc.code)
        except Unavailable as exc:
            log.error("restart failed", service=self.name, error=exc.message)

    async def _restart(self) -> None:
        self.restarts += 1
        await self._spawn()
        raise await self._exit()

    async def _exit(self) -> _Exited:
        assert self.process is not None
        return _Exited(await self.process.wait())


class _Exited(Exception):
    """A supervised service exited (the error a restart retries)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exit code {code}")
        self.code = code


# A service that exits is started again on its port after 1 s, 2 s, 4 s, 8 s, then 10 s.
RESTARTS = Policy(
    lambda exc: isinstance(exc, _Exited),
    Backoff(1.0, cap=10.0),
    event="local service exited; restarting on the same port",
    describe=lambda exc: {"exit_code": getattr(exc, "code", None)},
)


@contextlib.asynccontextmanager
async def local_service(
    name: str, env: dict[str, str] | None = None, log_path: Path | None = None
) -> AsyncIterator[str]:
    """Run `asiarch serve NAME` on a free port; yield its address. Says so on stderr (a line when it starts
    and one when it serves: a service loading torch or a model takes seconds, which would otherwise pass
    in silence; stdout stays the command's own)."""
    with tempfile.TemporaryDirectory(prefix=f"asiarch-{name}-") as folder:
        service = LocalService(
            name,
            {**os.environ, **(env or {})},
            log_path or Path(folder) / "service.log",
            port_file=Path(folder) / "port",
        )
        started = time.monotonic()
        print(f"starting a local {name} …", file=sys.stderr, flush=True)
        await service.start()
        print(
            f"a local {name} serves on {service.address} ({time.monotonic() - started:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        try:
            yield service.address
        finally:
            await service.stop()


async def stop_process(process: asyncio.subprocess.Process, grace: float = 30) -> None:
    """SIGTERM (the service drains and exits), then SIGKILL if it is still there after `grace` seconds."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=grace)
    except TimeoutError:
        process.kill()
        await process.wait()
