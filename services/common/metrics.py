"""Prometheus metrics of a service process: the per-RPC series every service shares, and `/metrics`.

What it guarantees:

- One registry per process: prometheus_client's default, which also carries its process_* and python_*
  series. The services' own series (`asiarch_<service>_...`) are declared where each fact is known
  (README, "Metrics", lists them).
- Every call a server receives is counted once, with its final gRPC status, by the one server
  interceptor (`asiarch.common.interceptors`, fed through `RpcMetrics`): unary and streaming calls alike,
  errors raised as `InvalidArgument` & co., UNAVAILABLE from shutdown admission, UNAUTHENTICATED, and
  calls gRPC refused before any handler ran (beyond ASIARCH_MAX_CONCURRENT_RPCS: RESOURCE_EXHAUSTED).
  A method the server does not implement is counted as UNIMPLEMENTED under the method name `unknown`,
  so a client cannot grow the label set.
- `metrics_server` serves the registry over HTTP on its own port (ASIARCH_METRICS_PORT, `metrics_port`
  says which) for as long as its block runs; a port it cannot bind is a ConfigError naming the variable.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from asiarch.common.config import ServerSettings, env_name
from asiarch.common.errors import ConfigError

log = structlog.get_logger("asiarch.metrics")

# From a health check (milliseconds) to an evaluation streamed for an hour.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_CALL = ("service", "grpc_service", "grpc_method", "grpc_type")

# The names and labels of go-grpc-prometheus (what existing gRPC dashboards and alerts query), plus
# `service`, the asiarch service that answered, so panels do not depend on how Prometheus labels targets.
HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by final status.", [*_CALL, "grpc_code"]
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to its final status (a stream: its whole life), by final status.",
    [*_CALL, "grpc_code"],
    buckets=RPC_BUCKETS,
)
IN_FLIGHT = Gauge("grpc_server_calls_in_flight", "RPCs whose handler is running now.", list(_CALL))

UNKNOWN = "unknown"


def grpc_type(handler: grpc.RpcMethodHandler) -> str:
    """go-grpc-prometheus's name for the handler's shape."""
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


@dataclass(frozen=True, slots=True)
class _Series:
    """The children of one (method, type) and a status: looked up once, then reused by every call."""

    handled: Counter
    seconds: Histogram


class RpcMetrics:
    """The per-RPC series of one service; the server interceptor calls `call` and `unimplemented`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._labels: dict[tuple[str, str], tuple[str, ...]] = {}
        self._in_flight: dict[tuple[str, ...], Gauge] = {}
        self._series: dict[tuple[tuple[str, ...], grpc.StatusCode], _Series] = {}

    def call(self, method: str, handler: grpc.RpcMethodHandler) -> Call:
        """A call just received for `method` ("/pkg.Service/Method"), to be answered by `handler`.

        Must run in the call's task (the interceptor's `intercept_service` does): if that task ends
        before `Call.begin`, gRPC answered without running the handler, and the call is counted as
        refused (RESOURCE_EXHAUSTED), or as CANCELLED when the task was cancelled.
        """
        kind = grpc_type(handler)
        labels = self._labels.get((method, kind))
        if labels is None:
            grpc_service, _, grpc_method = method.lstrip("/").rpartition("/")
            labels = self._labels[(method, kind)] = (self.service, grpc_service, grpc_method, kind)
        call = Call(self, labels, asyncio.current_task())
        if call.task is not None:
            call.task.add_done_callback(call.task_done)
        return call

    def unimplemented(self) -> None:
        self.record((self.service, UNKNOWN, UNKNOWN, UNKNOWN), grpc.StatusCode.UNIMPLEMENTED, 0.0)

    def in_flight(self, labels: tuple[str, ...]) -> Gauge:
        gauge = self._in_flight.get(labels)
        if gauge is None:
            gauge = self._in_flight[labels] = IN_FLIGHT.labels(*labels)
        return gauge

    def record(self, labels: tuple[str, ...], code: grpc.StatusCode, seconds: float) -> None:
        series = self._series.get((labels, code))
        if series is None:
            series = _Series(HANDLED.labels(*labels, code.name), HANDLING_SECONDS.labels(*labels, code.name))
            self._series[(labels, code)] = series
        series.handled.inc()
        series.seconds.observe(seconds)


class Call:
    """One received call: `begin` when its handler starts, `end` with its final status."""

    __slots__ = ("began", "labels", "metrics", "received", "task")

    def __init__(
        self, metrics: RpcMetrics, labels: tuple[str, ...], task: asyncio.Task[object] | None
    ) -> None:
        self.metrics, self.labels, self.task = metrics, labels, task
        self.received = time.perf_counter()
        self.began = False

    def begin(self) -> None:
        self.began = True
        if self.task is not None:
            # The handler runs: `end` will count the call, and a callback left on the task would cost
            # a turn of the event loop when the call ends, for nothing.
            self.task.remove_done_callback(self.task_done)
            self.task = None
        self.metrics.in_flight(self.labels).inc()

    def end(self, code: grpc.StatusCode) -> None:
        self.metrics.in_flight(self.labels).dec()
        self.metrics.record(self.labels, code, time.perf_counter() - self.received)

    def task_done(self, task: asyncio.Task[object]) -> None:
        if self.began:
            return
        # gRPC's task swallows the CancelledError, but the request to cancel stays counted on the task.
        code = grpc.StatusCode.CANCELLED if task.cancelling() else grpc.StatusCode.RESOURCE_EXHAUSTED
        self.metrics.record(self.labels, code, time.perf_counter() - self.received)


def metrics_port(settings: ServerSettings, default_port: int, default_metrics_port: int | None) -> int | None:
    """The port `/metrics` listens on (0: a free one), or None when ASIARCH_METRICS_PORT is `off`.

    Unset, it follows the gRPC port: a service on its default port serves metrics on its default metrics
    port, and one on any other port (`--port 0`, as tests and the orchestrator's local services run)
    on a free one, so processes that do not collide on gRPC ports do not collide on metrics ports.
    """
    if settings.metrics_port == "off":
        return None
    if settings.metrics_port is not None:
        return settings.metrics_port
    on_default = settings.port is None or settings.port == default_port
    return default_metrics_port if on_default and default_metrics_port else 0


@asynccontextmanager
async def metrics_server(host: str, port: int | None) -> AsyncIterator[int | None]:
    """Serve this process's registry at http://host:port/metrics while the block runs; yield the bound port.

    prometheus_client's server answers on a thread of its own, so a scrape never waits for the event
    loop. Leaving the block does not wait for it either: its loop notices the stop within its 0.5 s
    poll, then the port closes (a stopping service or a test's in-process server keeps no 0.5 s wait).
    """
    if port is None:
        yield None
        return
    address = host.removeprefix("[").removesuffix("]")  # [::] is how gRPC spells it; HTTP wants ::
    try:
        server, _ = start_http_server(port, addr=address)
    except OSError as exc:
        variable = env_name(ServerSettings, "metrics_port")
        reason = exc.strerror or exc
        raise ConfigError(f"cannot serve metrics on {host}:{port} ({variable}): {reason}") from None
    try:
        yield server.server_port
    finally:
        threading.Thread(target=_stop, args=(server,), name="metrics-stop", daemon=True).start()


def _stop(server: WSGIServer) -> None:
    server.shutdown()  # returns once serve_forever has noticed
    server.server_close()
