"""Prometheus metrics: a live service's /metrics moves with the calls it answers, with the right labels.

The selector runs as a real `asiarch serve` process and is scraped over HTTP; the interceptor's cases
(streams, each error path, calls gRPC refuses before a handler runs) use the in-process probe service
and read the process's registry, which is what its endpoint serves.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from metrics_support import metrics_port, moved, scrape, scrape_until, value
from probe_service import ProbeSelector, running
from prometheus_client import REGISTRY
from support import RunningService

from asiarch.common.config import ServerSettings
from asiarch.common.errors import ConfigError
from asiarch.common.metrics import metrics_port as resolve_metrics_port
from asiarch.common.metrics import metrics_server
from asiarch.v1 import engineer_pb2, engineer_pb2_grpc, selector_pb2, selector_pb2_grpc

HANDLED = "grpc_server_handled_total"
SELECT = {"grpc_service": "asiarch.v1.Selector", "grpc_method": "SelectParents"}
EVALUATE = {"grpc_service": "asiarch.v1.Engineer", "grpc_method": "Evaluate", "grpc_type": "server_stream"}


def handled(code: str, method: dict[str, str] = SELECT, kind: str = "unary") -> float:
    """The probe's count of calls to `method` that ended with `code` (this process's registry)."""
    labels = {"service": "probe", "grpc_type": kind, **method, "grpc_code": code}
    return REGISTRY.get_sample_value(HANDLED, labels) or 0.0


def in_flight() -> float:
    labels = {"service": "probe", "grpc_type": "unary", **SELECT}
    return REGISTRY.get_sample_value("grpc_server_calls_in_flight", labels) or 0.0


async def select(address: str, strategy: str, **kwargs: object) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await selector_pb2_grpc.SelectorStub(channel).SelectParents(
                selector_pb2.SelectParentsRequest(strategy=strategy), timeout=30, **kwargs
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def evaluate(address: str, experiment_id: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as channel:
        stream = engineer_pb2_grpc.EngineerStub(channel).Evaluate(
            engineer_pb2.EvaluateRequest(experiment_id=experiment_id), timeout=30
        )
        try:
            async for _ in stream:
                pass
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_a_live_selector_serves_metrics_that_move_with_its_calls(
    service_factory: Callable[..., RunningService],
) -> None:
    selector = service_factory("selector")  # --port 0: its metrics take a free port too, logged
    port = metrics_port(selector)
    stub = selector_pb2_grpc.SelectorStub(selector.channel())
    candidates = [selector_pb2.Candidate(id="a", fitness=1.2), selector_pb2.Candidate(id="b", fitness=1.5)]
    before = scrape(port)
    stub.SelectParents(selector_pb2.SelectParentsRequest(strategy="asi-arch", k=1, candidates=candidates))
    with pytest.raises(grpc.RpcError) as refused:
        stub.SelectParents(selector_pb2.SelectParentsRequest(strategy="no-such-strategy", k=1))
    labels = {"service": "selector", "grpc_type": "unary", **SELECT}
    counted = lambda now: moved(before, now, HANDLED, **labels, grpc_code="INVALID_ARGUMENT") > 0  # noqa: E731
    after = scrape_until(port, counted)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert moved(before, after, HANDLED, **labels, grpc_code="OK") == 1
    assert moved(before, after, HANDLED, **labels, grpc_code="INVALID_ARGUMENT") == 1
    assert moved(before, after, "grpc_server_handling_seconds_count", **labels, grpc_code="OK") == 1
    bucket = "grpc_server_handling_seconds_bucket"
    assert moved(before, after, bucket, **labels, grpc_code="OK", le="+Inf") == 1
    assert moved(before, after, "asiarch_selector_selections_total", strategy="asi-arch") == 1
    assert value(after, "grpc_server_calls_in_flight", **labels) == 0
    assert value(after, "process_cpu_seconds_total") > 0  # the process collector rides along


async def test_streaming_calls_are_counted_once_with_their_final_status(tmp_path: Path) -> None:
    codes = ("OK", "INVALID_ARGUMENT", "INTERNAL")
    before = {code: handled(code, EVALUATE, "server_stream") for code in codes}
    async with running(tmp_path) as address:
        ended = [await evaluate(address, name) for name in ("fine", "fail-midway", "crash-midway")]
    assert [c.name for c in ended] == list(codes)
    for code in codes:
        assert handled(code, EVALUATE, "server_stream") - before[code] == 1, code


async def test_each_error_path_of_a_unary_call_is_counted_with_its_status(tmp_path: Path) -> None:
    expected = {
        "invalid": "INVALID_ARGUMENT",  # our InvalidArgument
        "pydantic": "INVALID_ARGUMENT",  # a pydantic ValidationError
        "crash": "INTERNAL",  # anything else that escapes the handler
        "abort": "NOT_FOUND",  # the handler's own abort
        "ok": "OK",
    }
    before = {code: handled(code) for code in set(expected.values()) | {"UNAUTHENTICATED"}}
    async with running(tmp_path, auth_token="s3cret") as address:
        bearer = (("authorization", "Bearer s3cret"),)
        codes = {strategy: await select(address, strategy, metadata=bearer) for strategy in expected}
        no_token = await select(address, "ok")
    assert {s: c.name for s, c in codes.items()} == expected
    assert no_token == grpc.StatusCode.UNAUTHENTICATED
    assert handled("INVALID_ARGUMENT") - before["INVALID_ARGUMENT"] == 2
    for code in ("INTERNAL", "NOT_FOUND", "OK", "UNAUTHENTICATED"):
        assert handled(code) - before[code] == 1, code


async def test_calls_refused_before_any_handler_ran_are_counted(tmp_path: Path) -> None:
    servicer = ProbeSelector()
    before = handled("RESOURCE_EXHAUSTED")
    async with running(tmp_path, servicer, max_concurrent_rpcs=2) as address:
        slow = [asyncio.create_task(select(address, "sleep:1")) for _ in range(2)]
        while len(servicer.seen) < 2:  # noqa: ASYNC110 - the servicer only records calls
            await asyncio.sleep(0.02)
        busy = in_flight()
        refused = await select(address, "ok")
        assert await asyncio.gather(*slow) == [grpc.StatusCode.OK, grpc.StatusCode.OK]
    assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert handled("RESOURCE_EXHAUSTED") - before == 1
    assert busy >= 2
    assert in_flight() == 0


async def test_an_unknown_method_is_counted_without_its_name(tmp_path: Path) -> None:
    labels = {"service": "probe", "grpc_service": "unknown", "grpc_method": "unknown"}
    unknown = {**labels, "grpc_type": "unknown", "grpc_code": "UNIMPLEMENTED"}
    before = REGISTRY.get_sample_value(HANDLED, unknown) or 0.0
    async with running(tmp_path) as address, grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/asiarch.v1.Selector/NoSuchMethod")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert (REGISTRY.get_sample_value(HANDLED, unknown) or 0.0) - before == 1


@pytest.mark.parametrize(
    ("env", "grpc_port", "expected"),
    [
        ({}, None, 9453),  # the service's default gRPC port: its default metrics port
        ({}, 50053, 9453),
        ({}, 0, 0),  # a free gRPC port (tests, local services): a free metrics port
        ({}, 6000, 0),
        ({"metrics_port": 9999}, 0, 9999),
        ({"metrics_port": "off"}, None, None),
    ],
)
def test_the_metrics_port_follows_the_grpc_port_unless_set(
    env: dict[str, object], grpc_port: int | None, expected: int | None
) -> None:
    settings = ServerSettings(port=grpc_port, **env)  # type: ignore[arg-type]
    assert resolve_metrics_port(settings, 50053, 9453) == expected


async def test_a_metrics_port_in_use_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="ASIARCH_METRICS_PORT"):
            async with running(tmp_path, metrics_port=taken.getsockname()[1]):
                pass


async def test_the_endpoint_serves_while_its_block_runs_and_closes_after() -> None:
    async with metrics_server("127.0.0.1", 0) as port:
        assert port
        served = await asyncio.to_thread(scrape, port)
    assert any(name == "python_info" for name, _ in served)  # this process's registry
    for _ in range(200):  # its thread notices the stop within its 0.5 s poll
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):  # no listener: refused, or reset as it closes
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the metrics port stayed open after the block ended")
