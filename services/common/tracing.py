"""OpenTelemetry tracing for the services and the orchestrator, chosen by the standard OTEL_* variables.

Off by default, at no cost: unless OTEL_TRACES_EXPORTER names an exporter (and OTEL_SDK_DISABLED is not
true), `configure` installs nothing, `server_interceptors` and `client_interceptors` return no
interceptors and `CycleSpans` opens no span, so every call takes exactly the path it takes without
tracing. When on:

- exporters are found through the `opentelemetry_traces_exporter` entry points as the SDK's
  autoconfiguration finds them (`otlp`, the protocol from OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL,
  `console`, a comma-separated list); each exporter reads its own OTEL_EXPORTER_* variables, the
  sampler its OTEL_TRACES_SAMPLER, the batch processor its OTEL_BSP_*;
- the service name is OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES), else
  `asiarch-<service>`;
- every server gets the OTel aio server interceptor and every channel of `open_channel` the client
  ones, so a W3C `traceparent` travels with every call (health checks and reflection are not traced);
- the server interceptor stores our request id on the call's span as `asiarch.request_id`, and log lines
  written while a span is current carry its `trace_id` and `span_id` (asiarch.common.logs);
- `shutdown` flushes the spans still buffered (a stopping service calls it).

A program may install its own provider instead (`install`: a test's in-memory exporter); tracing is on
in this process exactly while one is installed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED

from asiarch.common.errors import ConfigError

if TYPE_CHECKING:
    import grpc
    from opentelemetry.sdk.trace import TracerProvider

REQUEST_ID_ATTRIBUTE = "asiarch.request_id"
TRACER_NAME = "asiarch"

T = TypeVar("T")

# The SDK and the gRPC instrumentation are imported only when tracing is on: they would add a tenth of a
# second to the start of every command and service.
_provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether this process traces (a provider is installed)."""
    return _provider is not None


def install(provider: TracerProvider) -> None:
    """Trace with `provider` in this process from now on (until `shutdown`)."""
    global _provider
    _provider = provider


def configure(service: str) -> bool:
    """Install a tracer provider as the OTEL_* variables say; False (nothing installed, nothing imported)
    when they name no exporter or disable the SDK. Raises ConfigError for an exporter no package provides."""
    if _provider is not None:
        return True
    names = os.environ.get(OTEL_TRACES_EXPORTER, "").strip().lower()
    if names in ("", "none") or os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        return False
    install(_from_environment(service))
    return True


def _from_environment(service: str) -> TracerProvider:
    # The SDK's own resolution of OTEL_TRACES_EXPORTER (entry points, `otlp` by protocol): private names
    # of a pinned SDK; tests/common/test_tracing.py fails if an upgrade moves them.
    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        exporters, _, _ = _import_exporters(_get_exporter_names("traces"), [], [])
    except RuntimeError as exc:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {exc}") from None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"asiarch-{service}"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters.values():
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    trace.set_tracer_provider(provider)  # for any other instrumentation in the process
    return provider


def shutdown() -> None:
    """Export what is buffered and stop tracing in this process (no-op when off)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def _traced_calls() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    # Probes call health every few seconds, and reflection is tooling: neither is part of a trace.
    return filters.negate(
        filters.any_of(filters.service_prefix("grpc.health.v1"), filters.service_prefix("grpc.reflection"))
    )


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The OTel server interceptor when tracing is on (put it first: outermost); else none."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=_traced_calls())]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The OTel client interceptors (they inject `traceparent`) when tracing is on; else none."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_traced_calls()))


def tag_request(request_id: str) -> None:
    """Store our request id on the current call's span, so a trace and the request's log lines join."""
    if _provider is not None:
        trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


class CycleSpans:
    """One span per cycle of a run, each the root of its own trace, so that one trace holds a cycle's
    calls; a cycle's work may begin in another task (the loop prepares the next cycle ahead) and its span
    goes with it. Opens nothing when tracing is off."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._open: dict[int, trace.Span] = {}

    @contextmanager
    def current(self, cycle: int) -> Iterator[None]:
        """Make the cycle's span current (started, as a new trace, the first time)."""
        if _provider is None:
            yield
            return
        span = self._open.get(cycle)
        if span is None:
            span = _provider.get_tracer(TRACER_NAME).start_span(
                f"cycle {cycle}",
                context=otel_context.Context(),  # a root: not a child of whatever is current
                attributes={"asiarch.run_id": self._run_id, "asiarch.cycle": cycle},
            )
            self._open[cycle] = span
        with trace.use_span(span, end_on_exit=False):
            yield

    async def run(self, cycle: int, work: Coroutine[Any, Any, T], *, last: bool = False) -> T:
        """Await `work` inside the cycle's span; `last`: the cycle's work is done, its span ends."""
        try:
            with self.current(cycle):
                return await work
        finally:
            if last:
                self.end(cycle)

    def task(self, cycle: int, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """`work` as a task that runs inside the cycle's span (a task keeps the context it was made in)."""
        with self.current(cycle):
            return asyncio.create_task(work)

    def end(self, cycle: int) -> None:
        span = self._open.pop(cycle, None)
        if span is not None:
            span.end()

    def end_all(self) -> None:
        """End what is open (a stopped run: the cycle prepared ahead)."""
        for cycle in list(self._open):
            self.end(cycle)
