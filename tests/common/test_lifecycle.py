"""Services as real processes: logs, graceful shutdown on SIGTERM, port selection."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from structlog.testing import capture_logs
from support import REPO, RunningService, health_status

from asiarch.common.local import LocalService, wait_serving
from asiarch.v1 import selector_pb2, selector_pb2_grpc

PROBE = [sys.executable, str(REPO / "tests" / "common" / "probe_service.py")]


def test_access_log_is_structured_json(service_factory: Callable[..., RunningService]) -> None:
    service = service_factory("probe", command=PROBE)
    stub = selector_pb2_grpc.SelectorStub(service.channel())
    stub.SelectParents(
        selector_pb2.SelectParentsRequest(strategy="ok"), metadata=(("x-request-id", "log-me"),)
    )
    assert service.stop() == 0
    records = service.log_records()
    serving = next(r for r in records if r["event"] == "serving")
    assert serving["port"] == service.port
    access = next(r for r in records if r.get("request_id") == "log-me")
    assert access["event"] == "rpc"
    assert access["method"] == "/asiarch.v1.Selector/SelectParents"
    assert access["status"] == "OK"
    assert access["peer"].startswith("ipv4:127.0.0.1:")
    assert access["duration_ms"] >= 0
    assert access["service"] == "probe"


def test_sigterm_lets_the_in_flight_call_finish_and_reports_not_serving(
    service_factory: Callable[..., RunningService],
) -> None:
    service = service_factory(
        "probe",
        command=PROBE,
        env={"ASIARCH_SHUTDOWN_DRAIN_SECONDS": "1.0", "ASIARCH_SHUTDOWN_GRACE_SECONDS": "10"},
    )
    stub = selector_pb2_grpc.SelectorStub(service.channel())
    outcome: dict[str, object] = {}

    def slow_call() -> None:
        try:
            outcome["response"] = stub.SelectParents(
                selector_pb2.SelectParentsRequest(strategy="sleep:2.5"), timeout=20
            )
        except grpc.RpcError as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.5)  # the call is now in flight
    service.process.send_signal(signal.SIGTERM)

    statuses = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and health_pb2.HealthCheckResponse.NOT_SERVING not in statuses:
        try:
            statuses.add(health_status(service.address, timeout=1))
        except grpc.RpcError:
            break  # the port already closed
        time.sleep(0.05)

    caller.join(timeout=20)
    assert service.process.wait(timeout=20) == 0
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert "error" not in outcome, outcome.get("error")
    assert outcome["response"].strategy == "sleep:2.5"  # type: ignore[attr-defined]
    events = [r["event"] for r in service.log_records()]
    assert events.index("shutting down") < events.index("stopped")


def test_new_calls_are_refused_after_shutdown(service_factory: Callable[..., RunningService]) -> None:
    service = service_factory("selector")
    address = service.address
    assert service.stop(signal.SIGINT) == 0
    with pytest.raises(grpc.RpcError) as caught:
        health_status(address, timeout=1)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def outcomes(stub: selector_pb2_grpc.SelectorStub, strategies: list[str]) -> list[str]:
    """Each call's final status name: OK or the code it failed with."""

    async def one(strategy: str) -> str:
        try:
            await stub.SelectParents(selector_pb2.SelectParentsRequest(strategy=strategy), timeout=60)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"

    return await asyncio.gather(*(one(s) for s in strategies))


async def test_sigterm_under_load_cancels_no_call_that_can_finish_within_the_grace(
    service_factory: Callable[..., RunningService],
) -> None:
    # 32 calls in flight: 8 waiting on I/O, begun before the signal, and 24 that each hold the event
    # loop for 0.1 s, most still queued inside gRPC when SIGTERM comes (what a CPU-heavy selection
    # strategy does). 2.4 s of work, well within the grace: none may be CANCELLED, which clients do
    # not retry; what the server no longer takes must be UNAVAILABLE, which they do.
    service = service_factory("probe", command=PROBE, env={"ASIARCH_SHUTDOWN_GRACE_SECONDS": "30"})
    channels = [grpc.aio.insecure_channel(service.address) for _ in range(4)]
    stubs = [selector_pb2_grpc.SelectorStub(channel) for channel in channels]
    try:
        waiting = [asyncio.create_task(outcomes(stub, ["sleep:2"] * 2)) for stub in stubs]
        for stub in stubs:  # a later call on each connection: the waiting ones have begun
            assert await outcomes(stub, ["ok"]) == ["OK"]
        busy = [asyncio.create_task(outcomes(stub, ["busy:0.1"] * 6)) for stub in stubs]
        await asyncio.sleep(0.3)
        service.process.send_signal(signal.SIGTERM)
        late = []
        for stub in stubs * 2:
            await asyncio.sleep(0.02)
            late.append(asyncio.create_task(outcomes(stub, ["ok"])))
        waited = [o for task in waiting for o in await task]
        held = [o for task in busy for o in await task]
        after = [o for task in late for o in await task]
    finally:
        for channel in channels:
            await channel.close()
    assert service.process.wait(timeout=60) == 0
    counts = collections.Counter(waited + held + after)
    assert waited == ["OK"] * 8, counts
    assert set(held) <= {"OK", "UNAVAILABLE"}, counts
    assert set(after) <= {"OK", "UNAVAILABLE"}, counts


def test_bytes_that_are_no_request_get_invalid_argument_and_one_access_log_line(
    service_factory: Callable[..., RunningService],
) -> None:
    service = service_factory("probe", command=PROBE)
    garbage = service.channel().unary_unary("/asiarch.v1.Selector/SelectParents")
    with pytest.raises(grpc.RpcError) as caught:
        garbage(b"\xff\xff\xff\xff", metadata=(("x-request-id", "garbage-1"),), timeout=10)
    assert service.stop() == 0
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    lines = [r for r in service.log_records() if r.get("request_id") == "garbage-1"]
    assert [(r["event"], r["status"], r["method"]) for r in lines] == [
        ("rpc", "INVALID_ARGUMENT", "/asiarch.v1.Selector/SelectParents")
    ]
    assert "Traceback" not in service.log_path.read_text()


async def test_a_supervised_local_service_that_dies_serves_again_on_its_port_until_stopped(
    tmp_path: Path,
) -> None:
    # What `asiarch discover` does with the services it starts itself (asiarch.common.local).
    log_path = tmp_path / "logs" / "selector.log"
    service = LocalService("selector", dict(os.environ), log_path, tmp_path / ".port", restarts=1)
    await service.start()
    try:
        port, first = service.port, service.process
        assert first is not None
        with capture_logs() as logs:
            first.kill()
            await first.wait()
            await wait_serving(f"127.0.0.1:{port}")  # by the time the next one serves
        assert service.process is not first and (service.port, service.restarts) == (port, 1)
        said = [(e["event"], e["service"], e["exit_code"]) for e in logs if "exit_code" in e]
        assert said == [("local service exited; restarting on the same port", "selector", -signal.SIGKILL)]
    finally:
        await service.stop()
    assert service.process is not None and service.process.returncode is not None
    assert log_path.read_text().count('"event": "serving"') == 2  # one log, both starts
