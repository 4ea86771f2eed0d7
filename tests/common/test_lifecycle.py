"""Services as real processes: logs, graceful shutdown on SIGTERM, port selection."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2
from support import REPO, RunningService, health_status

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
