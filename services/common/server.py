"""Server bootstrap shared by every service.

A service describes itself with a `ServiceDefinition` (name, default port and
a lifespan that registers its servicers); `serve` does the rest: the aio
server with message-size and concurrency limits and the interceptor (behind OpenTelemetry's when the
OTEL_* variables turn tracing on: asiarch.common.tracing), TLS or
mTLS from ASIARCH_TLS_*, the standard health service, server reflection,
SIGTERM/SIGINT handling and a graceful shutdown that cancels no call that
can finish within the grace (calls it cannot take any more get UNAVAILABLE).
Prometheus metrics (asiarch.common.metrics) are served on their own port from
before the lifespan starts until it has ended; the interceptor counts every call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from pydantic_settings import BaseSettings

from asiarch.common import tracing
from asiarch.common.config import ServerSettings
from asiarch.common.errors import ConfigError
from asiarch.common.interceptors import Admission, ServerInterceptor
from asiarch.common.metrics import RpcMetrics, metrics_port, metrics_server
from asiarch.common.threads import ThreadSettings
from asiarch.v1 import analyst_pb2, engineer_pb2, researcher_pb2, selector_pb2

# Reflection answers from the process's descriptor pool. Loading the whole
# contract lets grpcurl describe any asiarch.v1 message through any service,
# while `list` still shows only the services this process implements.
CONTRACT = (analyst_pb2, engineer_pb2, researcher_pb2, selector_pb2)

log = structlog.get_logger("asiarch.server")
# How long no call may begin, with the event loop free, before a stopping server closes its port.
QUIET_SECONDS = 0.2

# The health servicer of each server `serve` runs, so a service whose own state breaks while it runs
# (the analyst's store found damaged) can report NOT_SERVING without stopping.
_HEALTH: weakref.WeakKeyDictionary[grpc.aio.Server, health.aio.HealthServicer] = weakref.WeakKeyDictionary()

# Registers servicers on the server, yields the full names of the services it
# added (e.g. "asiarch.v1.Selector"), and releases resources when it exits.
Lifespan = Callable[[grpc.aio.Server, ServerSettings], AbstractAsyncContextManager[Sequence[str]]]


@dataclass(frozen=True)
class ServiceDefinition:
    """What `asiarch serve NAME` needs to know about a service."""

    name: str
    default_port: int
    lifespan: Lifespan
    settings_type: type[ServerSettings] = ServerSettings
    summary: str = ""
    # Where /metrics listens when the service is on default_port and ASIARCH_METRICS_PORT is unset.
    default_metrics_port: int | None = None

    def all_settings(self) -> tuple[type[BaseSettings], ...]:
        """Every settings type the service reads: its own (which inherits any shared group it reads, such as
        LLMSettings) and what every service reads."""
        return (self.settings_type, ThreadSettings)


async def report_not_serving(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Health NOT_SERVING for `server` and these services until the process ends (no-op outside `serve`)."""
    servicer = _HEALTH.get(server)
    if servicer is None:
        return
    for name in ("", *service_names):
        await servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


def _public_reflection() -> grpc.RpcMethodHandler:
    """Reflection that knows only grpc.health.v1: what callers without the token are answered."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(health_pb2.DESCRIPTOR.serialized_pb))
    servicer = reflection.aio.ReflectionServicer([health.SERVICE_NAME], pool=pool)
    return grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )


def build_server(
    settings: ServerSettings, admission: Admission | None = None, metrics: RpcMetrics | None = None
) -> grpc.aio.Server:
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        # Without this a second server could bind the same port and share
        # its traffic, which hides a misconfiguration.
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age_seconds:
        options.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)))
    interceptor = ServerInterceptor(
        auth_token=token,
        admission=admission,
        public_reflection=_public_reflection() if token else None,
        metrics=metrics,
    )
    return grpc.aio.server(
        interceptors=[*tracing.server_interceptors(), interceptor],  # OTel outermost: ours runs in its span
        options=options,
        # Beyond it gRPC answers RESOURCE_EXHAUSTED before any handler runs: an overload is
        # refused at once instead of piling up calls that all become slow.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from ASIARCH_TLS_* (None: plaintext); with a CA, client certificates are required.

    Reads the files now: a missing or unreadable one raises ConfigError naming its variable.
    """
    files = settings.read()
    if files is None or files.cert is None or files.key is None:
        return None
    return grpc.ssl_server_credentials(
        [(files.key, files.cert)], root_certificates=files.ca, require_client_auth=files.ca is not None
    )


def _listen(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address} (ASIARCH_HOST/ASIARCH_PORT): {exc}") from None


def _write_port_file(path: Path, port: int) -> None:
    # Write then rename, so a reader polling for the file never sees it half written.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


async def serve(
    definition: ServiceDefinition,
    settings: ServerSettings,
    *,
    port_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the service until SIGTERM/SIGINT (or `stop` is set); return the bound port.

    Shutdown (`_shut_down`): health turns NOT_SERVING, new calls are still taken for
    `shutdown_drain_seconds` (load balancers notice), then calls that begin are refused
    UNAVAILABLE, and in-flight calls get `shutdown_grace_seconds` to finish. A second signal
    cancels whatever is still running.
    """
    stop = stop or asyncio.Event()
    tracing.configure(definition.name)  # before the lifespan: the channels it opens are traced too
    credentials = server_credentials(settings)  # before the lifespan: a bad file fails in a second
    admission = Admission()
    server = build_server(settings, admission, RpcMetrics(definition.name))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _HEALTH[server] = health_servicer
    port = definition.default_port if settings.port is None else settings.port
    address = f"{settings.host}:{port}"
    metrics_at = metrics_port(settings, definition.default_port, definition.default_metrics_port)

    async with (
        metrics_server(settings.host, metrics_at) as bound_metrics,  # a port in use fails before the lifespan
        definition.lifespan(server, settings) as service_names,
    ):
        reflection.enable_server_reflection(
            [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        bound = _listen(server, address, credentials)
        await server.start()
        for name in ("", *service_names):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            service=definition.name,
            address=f"{settings.host}:{bound}",
            port=bound,
            grpc_services=list(service_names),
            auth=bool(settings.auth_token),
            tls="mtls" if settings.tls_ca else "tls" if credentials else "off",
            metrics_port=bound_metrics,
        )
        if port_file is not None:
            _write_port_file(port_file, bound)
        await _serve_until_signalled(
            stop, lambda forced: _shut_down(server, health_servicer, admission, settings, forced)
        )
    log.info("stopped", service=definition.name)
    tracing.shutdown()  # flush the spans still buffered
    return bound


async def _serve_until_signalled(
    stop: asyncio.Event, shut_down: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Wait for SIGTERM/SIGINT (or `stop`), then run `shut_down`; a second signal sets its `forced`."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    forced = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            forced.set()  # a second signal: stop waiting for in-flight calls
        log.info("signal received", signal=signal.Signals(signum).name)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await stop.wait()
        await shut_down(forced)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _shut_down(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    admission: Admission,
    settings: ServerSettings,
    forced: asyncio.Event,
) -> None:
    """Stop without cancelling a call that can finish within the grace.

    gRPC cancels (CANCELLED, which clients do not retry) every call it has received but not yet
    handed to a handler when `server.stop` begins; behind a handler that holds the event loop that
    can be most of them. So calls that begin from now on are refused UNAVAILABLE (retried) until
    none has begun for QUIET_SECONDS with the loop free, and only then does the server stop,
    giving the calls still running what is left of the grace.
    """
    log.info(
        "shutting down",
        drain_seconds=settings.shutdown_drain_seconds,
        grace_seconds=settings.shutdown_grace_seconds,
    )
    await health_servicer.enter_graceful_shutdown()
    if settings.shutdown_drain_seconds:
        await asyncio.sleep(settings.shutdown_drain_seconds)
    deadline = time.monotonic() + settings.shutdown_grace_seconds
    admission.refusing = True
    quiesced = asyncio.create_task(admission.quiesce(QUIET_SECONDS, deadline))
    forced_wait = asyncio.create_task(forced.wait())
    await asyncio.wait({quiesced, forced_wait}, return_when=asyncio.FIRST_COMPLETED)
    quiesced.cancel()
    grace_left = 0.0 if forced.is_set() else max(0.0, deadline - time.monotonic())
    stopping = asyncio.create_task(server.stop(grace_left))
    await asyncio.wait({stopping, forced_wait}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        log.warning("second signal: cancelling in-flight calls")
        await server.stop(0)
    forced_wait.cancel()
    await stopping
