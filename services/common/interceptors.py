"""The server interceptor: request ids, access logs, auth, admission and error mapping.

One interceptor wraps every handler (unary and streaming alike) in a single
`_call_scope`, so each call gets exactly one access-log line with its final
status, and no exception escapes without becoming a proper status code whose
details are cut to a short message (`errors.status_details`). Given an
`RpcMetrics` (asiarch.common.metrics), it counts each call with that same final
status, and counts the calls gRPC answers without running the handler.

Requests are decoded inside that scope too: bytes that are not the method's
request message are answered INVALID_ARGUMENT (field "request") and logged
like any other call, instead of gRPC's UNKNOWN with a traceback and no log line.

`Admission` is how shutdown stops new work: once it refuses, every call that
begins (health checks excepted) is answered UNAVAILABLE, which clients retry,
while calls already running finish.

With an auth token, reflection without a token answers only about the health
service, so `grpcurl ... grpc.health.v1.Health/Check` works without a token
(health is open for probes) while the contract stays closed.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc
import pydantic
import structlog
from google.protobuf.message import Message

from asiarch.common import tracing
from asiarch.common.context import (
    AUTHORIZATION_HEADER,
    REQUEST_ID_HEADER,
    enter_call,
    exit_call,
    new_request_id,
)
from asiarch.common.errors import InvalidArgument, ServiceError, Unauthenticated, Unavailable, status_details
from asiarch.common.fields import check_fields

if TYPE_CHECKING:
    from asiarch.common.metrics import Call, RpcMetrics

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
MAX_REQUEST_ID_LENGTH = 128

log = structlog.get_logger("asiarch.access")


def format_validation_error(exc: pydantic.ValidationError) -> str:
    """'field.sub: message' for each problem, joined; the form clients see in INVALID_ARGUMENT."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


class Admission:
    """Whether calls that begin now are taken, and when the last one began."""

    def __init__(self) -> None:
        self.refusing = False
        self.last_arrival = time.monotonic()

    def admit(self) -> None:
        """Note a call beginning; raise Unavailable once shutdown has begun refusing."""
        self.last_arrival = time.monotonic()
        if self.refusing:
            raise Unavailable("the server is shutting down; retry the call (on another replica, or later)")

    async def quiesce(self, period: float, deadline: float) -> bool:
        """Wait until `period` seconds pass with no call beginning and the loop free; False at `deadline`.

        gRPC cancels (CANCELLED) calls it has received but not yet handed to Python when the server
        stops, and it hands them over only while the event loop runs: a loop that a handler blocked
        is not quiet, however long no call was seen.
        """
        tick = period / 5
        quiet_since = time.monotonic()
        while (now := time.monotonic()) - quiet_since < period:
            if now >= deadline:
                return False
            await asyncio.sleep(tick)
            woke = time.monotonic()
            if woke - now > 2 * tick or self.last_arrival > quiet_since:
                quiet_since = woke
        return True


class Undecodable:
    """What a wrapped request deserializer returns for bytes that are not its message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"request: cannot decode the request message ({self.reason})")


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every RPC handler; see the module docstring."""

    def __init__(
        self,
        auth_token: str | None = None,
        admission: Admission | None = None,
        public_reflection: grpc.RpcMethodHandler | None = None,
        metrics: RpcMetrics | None = None,
    ) -> None:
        self._auth_token = auth_token.encode() if auth_token else None
        self._admission = admission or Admission()
        self._public_reflection = public_reflection
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            if self._metrics is not None:
                self._metrics.unimplemented()
            return None
        method = handler_call_details.method
        metadata = {key: value for key, value in handler_call_details.invocation_metadata or ()}
        public = method.startswith(HEALTH_PREFIX)
        if self._public_reflection is not None and method.startswith(REFLECTION_PREFIX):
            try:
                self._check_auth(metadata)
            except Unauthenticated:
                handler, public = self._public_reflection, True
        # Counted from here: a call gRPC then refuses without running the handler is counted too.
        call = self._metrics.call(method, handler) if self._metrics is not None else None
        return _wrap_handler(
            handler, lambda context: self._call_scope(method, metadata, context, public, call)
        )

    def _check_auth(self, metadata: dict[str, Any]) -> None:
        if self._auth_token is None:
            return
        header = metadata.get(AUTHORIZATION_HEADER)
        if not isinstance(header, str) or not header.startswith("Bearer "):
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        if not hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), self._auth_token):
            raise Unauthenticated("invalid bearer token")

    @asynccontextmanager
    async def _call_scope(
        self,
        method: str,
        metadata: dict[str, Any],
        context: grpc.aio.ServicerContext,
        public: bool,
        call: Call | None = None,
    ) -> AsyncIterator[None]:
        """Runs one call: `public` calls (health, and reflection reduced to it) need no token and are
        admitted during shutdown, so probes see NOT_SERVING rather than an error."""
        given = metadata.get(REQUEST_ID_HEADER)
        request_id = given[:MAX_REQUEST_ID_LENGTH] if isinstance(given, str) and given else new_request_id()
        tokens = enter_call(request_id, context.time_remaining())
        tracing.tag_request(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method, peer=context.peer())
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        if call is not None:
            call.begin()
        try:
            if not public:
                self._check_auth(metadata)
                self._admission.admit()
            yield
            code = context.code() or grpc.StatusCode.OK
        except ServiceError as exc:
            code = exc.code
            await context.abort(exc.code, status_details(exc.message))
        except pydantic.ValidationError as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, status_details(format_validation_error(exc)))
        except grpc.aio.AbortError:  # the handler aborted with its own status
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in handler")
            await context.abort(
                code, f"internal error; the server log has the details (request id {request_id})"
            )
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            quiet = method.startswith((HEALTH_PREFIX, REFLECTION_PREFIX)) and code == grpc.StatusCode.OK
            emit = log.debug if quiet else log.info
            emit("rpc", status=code.name, duration_ms=duration_ms)
            if call is not None:
                call.end(code)
            structlog.contextvars.unbind_contextvars("request_id", "method", "peer")
            exit_call(tokens)


ScopeFactory = Callable[[grpc.aio.ServicerContext], Any]


def _decoding(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The deserializer, returning Undecodable instead of raising, so the failure reaches the scope."""
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, or whatever a custom deserializer raises
            return Undecodable(str(exc) or type(exc).__name__)

    return decode


def _decoded(request: Any) -> Any:
    """The request a handler may see: decodable, and obeying the rules of every field (fields.py)."""
    if isinstance(request, Undecodable):
        raise request.error()
    if isinstance(request, Message):
        check_fields(request)
    return request


async def _decoded_stream(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _wrap_handler(handler: grpc.RpcMethodHandler, scope: ScopeFactory) -> grpc.RpcMethodHandler:
    """Return a handler of the same kind whose behaviour runs inside scope(context)."""
    kind = next(k for k in _FACTORIES if getattr(handler, k))
    behaviour = getattr(handler, kind)
    arrival = _decoded_stream if handler.request_streaming else _decoded
    wrapped = _wrap_streaming if handler.response_streaming else _wrap_unary
    return _FACTORIES[kind](
        wrapped(behaviour, scope, arrival),
        request_deserializer=_decoding(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


Arrival = Callable[[Any], Any]


def _wrap_unary(behaviour: Callable[..., Any], scope: ScopeFactory, arrival: Arrival) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with scope(context):
            return await behaviour(arrival(request), context)

    return unary


def _wrap_streaming(
    behaviour: Callable[..., Any], scope: ScopeFactory, arrival: Arrival
) -> Callable[..., Any]:
    # A streaming handler is either an async generator or a coroutine that
    # calls context.write(); keep whichever shape the servicer chose.
    if inspect.isasyncgenfunction(behaviour):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                async for response in behaviour(arrival(request), context):
                    yield response

        return generator

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with scope(context):
            return await behaviour(arrival(request), context)

    return writer
