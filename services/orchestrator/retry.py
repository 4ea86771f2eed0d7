"""Retrying calls to services that may be restarting.

UNAVAILABLE (a service restarting, a broken stream), RESOURCE_EXHAUSTED (an
engineer with a full queue) and DEADLINE_EXCEEDED are retried with capped
exponential backoff; anything else is the callee's verdict and is raised.
Every call the loop retries is idempotent: ids are minted before the call.
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
            if exc.code() not in RETRYABLE or attempt == attempts:
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
