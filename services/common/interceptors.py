"""The server interceptor: request ids, access logs, auth and error mapping.

One interceptor wraps every handler (unary and streaming alike) in a single
`_call_scope`, so each call gets exactly one access-log line with its final
status, and no exception escapes without becoming a proper status code.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pydantic
import structlog

from asiarch.common.context import (
    AUTHORIZATION_HEADER,
    REQUEST_ID_HEADER,
    enter_call,
    exit_call,
    new_request_id,
)
from asiarch.common.errors import ServiceError, Unauthenticated

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


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every RPC handler; see the module docstring."""

    def __init__(self, auth_token: str | None = None) -> None:
        self._auth_token = auth_token.encode() if auth_token else None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return None
        method = handler_call_details.method
        metadata = {key: value for key, value in handler_call_details.invocation_metadata or ()}
        return _wrap_handler(handler, lambda context: self._call_scope(method, metadata, context))

    def _check_auth(self, method: str, metadata: dict[str, Any]) -> None:
        # Health stays open: Kubernetes' native gRPC probes cannot send headers.
        if self._auth_token is None or method.startswith(HEALTH_PREFIX):
            return
        header = metadata.get(AUTHORIZATION_HEADER)
        if not isinstance(header, str) or not header.startswith("Bearer "):
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        if not hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), self._auth_token):
            raise Unauthenticated("invalid bearer token")

    @asynccontextmanager
    async def _call_scope(
        self, method: str, metadata: dict[str, Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[None]:
        given = metadata.get(REQUEST_ID_HEADER)
        request_id = given[:MAX_REQUEST_ID_LENGTH] if isinstance(given, str) and given else new_request_id()
        tokens = enter_call(request_id, context.time_remaining())
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method, peer=context.peer())
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            self._check_auth(method, metadata)
            yield
            code = context.code() or grpc.StatusCode.OK
        except ServiceError as exc:
            code = exc.code
            await context.abort(exc.code, exc.message)
        except pydantic.ValidationError as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, format_validation_error(exc))
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
            structlog.contextvars.unbind_contextvars("request_id", "method", "peer")
            exit_call(tokens)


ScopeFactory = Callable[[grpc.aio.ServicerContext], Any]


def _wrap_handler(handler: grpc.RpcMethodHandler, scope: ScopeFactory) -> grpc.RpcMethodHandler:
    """Return a handler of the same kind whose behaviour runs inside scope(context)."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, scope),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_streaming(handler.unary_stream, scope),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, scope),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_streaming(handler.stream_stream, scope),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap_unary(behaviour: Callable[..., Any], scope: ScopeFactory) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with scope(context):
            return await behaviour(request, context)

    return unary


def _wrap_streaming(behaviour: Callable[..., Any], scope: ScopeFactory) -> Callable[..., Any]:
    # A streaming handler is either an async generator or a coroutine that
    # calls context.write(); keep whichever shape the servicer chose.
    if inspect.isasyncgenfunction(behaviour):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                async for response in behaviour(request, context):
                    yield response

        return generator

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with scope(context):
            return await behaviour(request, context)

    return writer
