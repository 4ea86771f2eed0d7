"""A Selector implementation with scripted behaviour, for testing the shared runtime.

The strategy field picks what the handler does, so one service covers every
path through the interceptor: success, each error kind, slowness, and a call
to another service (to observe deadline and request-id propagation).
Run as a script it serves on a port like `asiarch serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pydantic

from asiarch.common.client import open_channel
from asiarch.common.config import ServerSettings, load_settings
from asiarch.common.context import REQUEST_ID_HEADER
from asiarch.common.errors import InvalidArgument
from asiarch.common.logs import configure_logging
from asiarch.common.server import ServiceDefinition, serve
from asiarch.v1 import engineer_pb2, engineer_pb2_grpc, selector_pb2, selector_pb2_grpc


class _Model(pydantic.BaseModel):
    k: pydantic.PositiveInt


class ProbeSelector(selector_pb2_grpc.SelectorServicer):
    def __init__(self, downstream: str | None = None) -> None:
        self.downstream = downstream
        self.seen: list[tuple[float | None, str | None]] = []

    async def SelectParents(
        self, request: selector_pb2.SelectParentsRequest, context: grpc.aio.ServicerContext
    ) -> selector_pb2.SelectParentsResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.seen.append((context.time_remaining(), metadata.get(REQUEST_ID_HEADER)))
        action, _, arg = request.strategy.partition(":")
        if action == "invalid":
            raise InvalidArgument("k must be positive, got 0")
        if action == "pydantic":
            _Model(k=0)
        if action == "crash":
            raise RuntimeError("secret internal detail")
        if action == "abort":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if action == "sleep":
            await asyncio.sleep(float(arg))
        if action == "busy":  # holds the event loop, as CPU-heavy work in a handler does
            time.sleep(float(arg))  # noqa: ASYNC251 - blocking is the point
        if action == "echo":  # quotes the value back, however long, as a validation message may
            raise InvalidArgument(f"strategy: unknown {arg!r}; valid strategies: ok, sleep, busy, echo")
        if action == "forward":
            async with open_channel(self.downstream or "") as channel:
                stub = selector_pb2_grpc.SelectorStub(channel)
                inner = selector_pb2.SelectParentsRequest(strategy=arg)
                return await stub.SelectParents(inner, timeout=30)
        return selector_pb2.SelectParentsResponse(strategy=request.strategy)


class ProbeEngineer(engineer_pb2_grpc.EngineerServicer):
    """A server-streaming handler written as an async generator (the shape Evaluate uses)."""

    async def Evaluate(
        self, request: engineer_pb2.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[engineer_pb2.EvaluationEvent]:
        for step in range(3):
            yield engineer_pb2.EvaluationEvent(
                experiment_id=request.experiment_id, progress=engineer_pb2.EvaluationProgress(step=step)
            )
            if request.experiment_id == "fail-midway":
                raise InvalidArgument("bad budget discovered after the first event")
            if request.experiment_id == "crash-midway":
                raise RuntimeError("secret stream detail")


def definition(servicer: ProbeSelector) -> ServiceDefinition:
    @asynccontextmanager
    async def lifespan(server: grpc.aio.Server, settings: ServerSettings) -> AsyncIterator[Sequence[str]]:
        selector_pb2_grpc.add_SelectorServicer_to_server(servicer, server)
        engineer_pb2_grpc.add_EngineerServicer_to_server(ProbeEngineer(), server)
        yield ["asiarch.v1.Selector", "asiarch.v1.Engineer"]

    return ServiceDefinition(name="probe", default_port=0, lifespan=lifespan)


@asynccontextmanager
async def running(
    tmp_path: Path, servicer: ProbeSelector | None = None, **settings: object
) -> AsyncIterator[str]:
    """Serve a ProbeSelector in this process on a free port while the block runs; yield its address."""
    stop = asyncio.Event()
    port_file = tmp_path / f"probe-{id(stop)}.port"
    config = ServerSettings(port=0, **settings)  # type: ignore[arg-type]
    task = asyncio.create_task(
        serve(definition(servicer or ProbeSelector()), config, port_file=port_file, stop=stop)
    )
    for _ in range(400):
        if port_file.exists() or task.done():
            break
        await asyncio.sleep(0.025)
    if task.done():
        task.result()
    try:
        yield f"127.0.0.1:{int(port_file.read_text())}"
    finally:
        stop.set()
        await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    settings = load_settings(ServerSettings, port=args.port)
    configure_logging(settings.log_level, settings.log_format, service="probe")
    asyncio.run(serve(definition(ProbeSelector()), settings, port_file=args.port_file))


if __name__ == "__main__":
    main()
