"""Helpers for tests that run services as real processes on real ports, and `Flaky`, a call that fails
for a while (what retries are tested with)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class RunningService:
    """A service subprocess; stop() sends a signal and returns the exit code."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.address)
        self.channels.append(channel)
        return channel

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        for channel in self.channels:
            channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def serving(add_to_server: Callable[[Any, grpc.Server], None], servicer: Any) -> Iterator[int]:
    """An in-test gRPC server for `servicer` (a stand-in speaking the real protocol) on a free port of
    127.0.0.1; yields the port, stops the server after."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)


def start_service(
    name: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    timeout: float = 60,
) -> RunningService:
    """Start `asiarch serve NAME --port 0` (or command) and wait until it is SERVING."""
    port_file = workdir / f"{name}.port"
    log_path = workdir / f"{name}.log"
    port_file.unlink(missing_ok=True)
    cmd = command or [str(BIN / "asiarch"), "serve", name, "--port", "0"]
    full_env = {**os.environ, "ASIARCH_LOG_LEVEL": "debug", **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*cmd, "--port-file", str(port_file)], stdout=log_file, stderr=subprocess.STDOUT, env=full_env
        )
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"{name} did not start within {timeout} s:\n{log_path.read_text()}")
        time.sleep(0.05)
    service = RunningService(name, process, int(port_file.read_text()), log_path)
    wait_serving(service.address, timeout=max(1.0, deadline - time.monotonic()))
    return service


def health_status(address: str, service: str = "", timeout: float = 5) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status


def wait_serving(address: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if health_status(address, timeout=1) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{address} never reported SERVING")
        time.sleep(0.05)


class Flaky:
    """A call that fails with the given errors, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"
