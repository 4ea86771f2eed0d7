"""Server bootstrap shared by every service.

A service describes itself with a `ServiceDefinition` (name, default port and
a lifespan that registers its servicers); `serve` does the rest: the aio
server with message-size limits and the interceptor, the standard health
service, server reflection, SIGTERM/SIGINT handling and graceful shutdown.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic_settings import BaseSettings

from asiarch.common.config import ServerSettings
from asiarch.common.errors import ConfigError
from asiarch.common.interceptors import ServerInterceptor
from asiarch.v1 import analyst_pb2, engineer_pb2, researcher_pb2, selector_pb2

# Reflection answers from the process's descriptor pool. Loading the whole
# contract lets grpcurl describe any asiarch.v1 message through any service,
# while `list` still shows only the services this process implements.
CONTRACT = (analyst_pb2, engineer_pb2, researcher_pb2, selector_pb2)

log = structlog.get_logger("asiarch.server")

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
    # Further settings the service reads (e.g. LLMSettings): validated before it
    # starts, and part of the variables a deployment may set for it.
    extra_settings: tuple[type[BaseSettings], ...] = ()


def build_server(settings: ServerSettings) -> grpc.aio.Server:
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
    return grpc.aio.server(interceptors=[ServerInterceptor(auth_token=token)], options=options)


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

    Shutdown: health turns NOT_SERVING, new calls are still accepted for
    `shutdown_drain_seconds` (load balancers notice), then the port closes and
    in-flight calls get `shutdown_grace_seconds` to finish.
    """
    stop = stop or asyncio.Event()
    server = build_server(settings)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = definition.default_port if settings.port is None else settings.port
    address = f"{settings.host}:{port}"

    async with definition.lifespan(server, settings) as service_names:
        reflection.enable_server_reflection(
            [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {address} (ASIARCH_HOST/ASIARCH_PORT): {exc}") from None
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
        )
        if port_file is not None:
            _write_port_file(port_file, bound)

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
            log.info(
                "shutting down",
                drain_seconds=settings.shutdown_drain_seconds,
                grace_seconds=settings.shutdown_grace_seconds,
            )
            await health_servicer.enter_graceful_shutdown()
            if settings.shutdown_drain_seconds:
                await asyncio.sleep(settings.shutdown_drain_seconds)
            stopping = asyncio.create_task(server.stop(settings.shutdown_grace_seconds))
            forced_wait = asyncio.create_task(forced.wait())
            await asyncio.wait({stopping, forced_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not stopping.done():
                log.warning("second signal: cancelling in-flight calls")
                await server.stop(0)
            forced_wait.cancel()
            await stopping
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
    log.info("stopped", service=definition.name)
    return bound
