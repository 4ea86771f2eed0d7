"""Retrying calls to services that may be restarting (the rule; the policy's shape is
`asiarch.common.retry`'s).

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

gRPC's own service-config `retryPolicy` would change that for the unary calls: it retries by code alone
(a CANCELLED the server explains too), makes at most 5 attempts, spends one call's timeout over all of its
attempts (so a DEADLINE_EXCEEDED is never retried), draws waits from [0, backoff] and logs no retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from asiarch.common.retry import Backoff, Policy

log = structlog.get_logger("asiarch.discover")
T = TypeVar("T")
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The details of a CANCELLED that carries no message but the code's own name.
DROPPED_DETAILS = {"", "cancelled", "canceled"}


def retryable(exc: Exception) -> bool:
    """Whether a failed call may succeed if made again (see the module docstring)."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return False
    if exc.code() in RETRYABLE:
        return True
    dropped = (exc.details() or "").strip().lower() in DROPPED_DETAILS
    return exc.code() == grpc.StatusCode.CANCELLED and dropped


def _status(exc: Exception) -> dict[str, Any]:
    assert isinstance(exc, grpc.aio.AioRpcError)  # the only errors `retryable` accepts
    return {"code": exc.code().name, "details": (exc.details() or "")[:200]}


async def retrying(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 8,
    first_wait: float = 1.0,
    max_wait: float = 30.0,
) -> T:
    """`call()`, made again (at most `attempts` times in all) while it fails retryably; waits double from
    `first_wait` up to `max_wait`, jittered so that calls cut by one restart do not return at once."""
    policy = Policy(
        retryable,
        Backoff(first_wait, cap=max_wait, jitter=True),
        attempts=attempts,
        log=log,
        describe=_status,
    )
    return await policy.call(what, call)
