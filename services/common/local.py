"""Start a service as a local subprocess when no address is given for it.

Used by commands that talk to a service (`asiarch evaluate`, `asiarch
discover`): with an address they connect to it; without one they run
`asiarch serve NAME --port 0` on 127.0.0.1, wait for its health check, and
stop it with SIGTERM on exit (and on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asiarch.common.errors import Unavailable

START_TIMEOUT = 120.0


async def wait_serving(address: str, within: float = START_TIMEOUT) -> None:
    """Poll grpc.health.v1 until the server says SERVING."""
    deadline = asyncio.get_running_loop().time() + within
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"{address} did not report SERVING within {within:.0f} s")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def local_service(
    name: str, env: dict[str, str] | None = None, log_path: Path | None = None
) -> AsyncIterator[str]:
    """Run `asiarch serve NAME` on a free port; yield its address."""
    with tempfile.TemporaryDirectory(prefix=f"asiarch-{name}-") as folder:
        port_file = Path(folder) / "port"
        # A local file opened once at start-up; not worth a thread.
        log = open(log_path or Path(folder) / "service.log", "ab")  # noqa: SIM115, ASYNC230
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asiarch.common.cli",
            "serve",
            name,
            "--port",
            "0",
            "--port-file",
            str(port_file),
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + START_TIMEOUT
            while not port_file.exists():
                if process.returncode is not None or loop.time() > deadline:
                    raise Unavailable(f"the local {name} did not start; see {log.name}")
                await asyncio.sleep(0.05)
            address = f"127.0.0.1:{int(port_file.read_text())}"
            await wait_serving(address)
            yield address
        finally:
            await stop_process(process)
            log.close()


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
