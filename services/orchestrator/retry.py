"""Retrying calls to services that may be restarting.

UNAVAILABLE (a service restarting, a broken stream), RESOURCE_EXHAUSTED (an
engineer with a full queue) and DEADLINE_EXCEEDED are retried with capped
exponential backoff; anything else is the callee's verdict and is raised.
Every call the loop retries is idempotent: ids are minted before the call.

CANCELLED is retried only when the server dropped the call without a verdict.
A grpc.aio server that shuts down cancels the calls it had accepted but not yet
handed to a handler, and gRPC reports those with no message of its own (details
"CANCELLED", seen with grpcio 1.85: issue 16's SIGTERM under load returned 28 of
32 calls so); a handler that cancels on purpose says why, and that is raised.
The client's own cancellation never arrives here: grpc.aio raises it as
asyncio.CancelledError (the loop interrupted, a call cancelled, its channel
closed), which is not caught, so stopping the loop stops its calls.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import structlog

log = structlog.get_logger("asiarch.discover")
T = TypeVar("T")
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The details of a CANCELLED that carries no message but the code's own name.
DROPPED_DETAILS = {"", "cancelled", "canceled"}


def retryable(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call may succeed if made again (see the module docstring)."""
    if exc.code() in RETRYABLE:
        return True
    dropped = (exc.details() or "").strip().lower() in DROPPED_DETAILS
    return exc.code() == grpc.StatusCode.CANCELLED and dropped


async def retrying(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 8,
    first_wait: float = 1.0,
    max_wait: float = 30.0,
) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if not retryable(exc) or attempt == attempts:
                raise
            wait = min(max_wait, first_wait * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.warning(
                "call failed; retrying",
                call=what,
                code=exc.code().name,
                details=(exc.details() or "")[:200],
                attempt=attempt,
                wait_seconds=round(wait, 1),
            )
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
