"""Start a service as a local subprocess when no address is given for it.

Used by commands that talk to a service (`asiarch evaluate`, `asiarch
discover`, the results commands): with an address they connect to it; without
one they run `asiarch serve NAME --port 0` on 127.0.0.1, wait for its health
check, and stop it with SIGTERM on exit (and on Ctrl-C).

This module is the one place that starts an `asiarch serve` child
(`spawn_service`); `asiarch discover`'s supervisor restarts through it too.
Every Python child starts with `python_command`: `-P` keeps the current
directory off `sys.path`, so a checkout's top-level folders (our `kernels/`)
cannot shadow installed packages (Hugging Face's `kernels`, which transformers
imports) when a command is run from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asiarch.common.client import open_channel
from asiarch.common.errors import Unavailable

START_TIMEOUT = 120.0


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


def _prepare(log_path: Path, port_file: Path) -> BinaryIO:
    """Clear a stale port file and open the log (appending: a restart keeps the earlier lines)."""
    port_file.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return log_path.open("ab")


def _written_port(port_file: Path) -> int | None:
    """The port a starting service wrote, or None while it has not (or is half-way through)."""
    try:
        return int(port_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


async def spawn_service(
    name: str, *, port: int, log_path: Path, env: dict[str, str], port_file: Path
) -> tuple[asyncio.subprocess.Process, int]:
    """Start `asiarch serve NAME --port PORT` on 127.0.0.1 (0: a free one), logging to `log_path`;
    return the process and its port once it reports SERVING. A child that exits or never writes its port
    within START_TIMEOUT raises Unavailable naming the log (the reason is there, not here)."""
    log = _prepare(log_path, port_file)
    with log:
        process = await asyncio.create_subprocess_exec(
            *python_command("-m", "asiarch.common.cli", "serve", name, "--port", str(port)),
            "--port-file",
            str(port_file),
            stdout=log,
            stderr=log,
            env=env,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while (port := _written_port(port_file)) is None:
            if process.returncode is not None or loop.time() > deadline:
                raise Unavailable(f"the local {name} did not start; see {log_path}")
            await asyncio.sleep(0.05)
        await wait_serving(f"127.0.0.1:{port}")
    except BaseException:
        await stop_process(process, grace=5)
        raise
    return process, port


@contextlib.asynccontextmanager
async def local_service(
    name: str, env: dict[str, str] | None = None, log_path: Path | None = None
) -> AsyncIterator[str]:
    """Run `asiarch serve NAME` on a free port; yield its address."""
    with tempfile.TemporaryDirectory(prefix=f"asiarch-{name}-") as folder:
        process, port = await spawn_service(
            name,
            port=0,
            log_path=log_path or Path(folder) / "service.log",
            env={**os.environ, **(env or {})},
            port_file=Path(folder) / "port",
        )
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await stop_process(process)


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
