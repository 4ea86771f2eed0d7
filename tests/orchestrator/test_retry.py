"""Which failed calls the discovery loop makes again (asiarch.orchestrator.retry)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from structlog.testing import capture_logs
from support import Flaky

from asiarch.orchestrator.retry import retrying
from asiarch.v1 import selector_pb2, selector_pb2_grpc

SERVER = Path(__file__).with_name("draining_server.py")


def failure(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


async def test_a_call_the_server_dropped_without_a_verdict_is_made_again() -> None:
    # What grpc.aio sends for a call a shutting-down server had accepted but not started.
    call = Flaky(failure(grpc.StatusCode.CANCELLED, "CANCELLED"))
    assert await retrying("call", call, first_wait=0.01) == "answer"
    assert call.calls == 2


async def test_a_cancellation_the_server_explains_is_its_verdict() -> None:
    call = Flaky(failure(grpc.StatusCode.CANCELLED, "evaluation cancelled by its owner"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await retrying("call", call, first_wait=0.01)
    assert caught.value.details() == "evaluation cancelled by its owner"
    assert call.calls == 1


async def test_the_clients_own_cancellation_propagates_and_nothing_is_retried() -> None:
    started = asyncio.Event()
    calls = 0

    async def hanging() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(60)
        return "never"

    task = asyncio.create_task(retrying("call", hanging, first_wait=0.01))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


def _start(workdir: Path, name: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port_file = workdir / f"{name}.port"
    process = subprocess.Popen([sys.executable, "-P", str(SERVER), str(port_file), *args])
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert process.poll() is None and time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.05)
    return process, int(port_file.read_text())


async def test_calls_cut_by_a_draining_server_are_answered_by_its_replacement(tmp_path: Path) -> None:
    draining, port = _start(tmp_path, "draining", "--busy", "0.5")
    request = selector_pb2.SelectParentsRequest(strategy="uct")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = selector_pb2_grpc.SelectorStub(channel)

            def select() -> grpc.aio.UnaryUnaryCall:
                return stub.SelectParents(request, timeout=30)

            with capture_logs() as logs:
                calls = [asyncio.ensure_future(retrying("select", select, first_wait=0.2)) for _ in range(16)]
                await asyncio.sleep(0.2)
                draining.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(draining.wait, 60) == 0
                replacement, _ = _start(tmp_path, "replacement", "--port", str(port), "--busy", "0")
                try:
                    answers = await asyncio.gather(*calls)
                finally:
                    replacement.terminate()
                    replacement.wait(30)
    finally:
        if draining.poll() is None:
            draining.kill()
    assert len(answers) == 16
    assert {a.strategy for a in answers} <= {f"answered by {draining.pid}", f"answered by {replacement.pid}"}
    # The drain did cut calls with CANCELLED (else this test would prove nothing), and they were retried.
    assert any(entry.get("code") == "CANCELLED" for entry in logs)
