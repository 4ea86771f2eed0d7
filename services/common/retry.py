"""One retry policy for calls that may fail for a while (a service restarting, a store coming up, an
overloaded LLM server), built on tenacity.

Each caller states its numbers and its rule once, as a `Policy`; this module owns what every retry does:

- **Attempts**: at most `attempts` calls (None: until one succeeds) and, with `deadline`, no retry starts
  more than `deadline` seconds after the first attempt began.
- **What is retried** is the caller's `retryable(error)`. Anything else is raised at once, unchanged, and
  so is the last error once attempts or deadline are spent: the caller maps it. `asyncio.CancelledError`
  is never retried (it is no `Exception`): cancelling a caller stops its retries.
- **Waits** (`Backoff`): before retry n (n = 1, 2, ...) `first * 2**(n-1)`, or `first + step * (n-1)` when
  a `step` is given, never more than `cap`; with `jitter` the wait is drawn from [half, all] of that, so
  callers cut by the same outage come back spread out, none sooner than half the step.
- **One structlog warning per retry**: the caller's `event` with `call` (what was called), `attempt` (the
  one that failed), `wait_seconds` and the fields `describe(error)` gives.

Why the orchestrator's gRPC calls use this rather than gRPC's service-config `retryPolicy`: see
`asiarch.orchestrator.retry`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
import tenacity

T = TypeVar("T")
_LOG = structlog.get_logger("asiarch.retry")


@dataclass(frozen=True)
class Backoff:
    """The waits between attempts (see the module docstring)."""

    first: float
    cap: float = math.inf
    step: float | None = None  # None: each wait doubles the one before
    jitter: bool = False

    def wait(self) -> tenacity.wait.wait_base:
        if self.step is None:
            grows: tenacity.wait.wait_base = tenacity.wait_exponential(multiplier=self.first, max=self.cap)
        else:
            grows = tenacity.wait_incrementing(start=self.first, increment=self.step, max=self.cap)
        return _EqualJitter(grows) if self.jitter else grows


class _EqualJitter(tenacity.wait.wait_base):
    """A wait drawn from [half, all] of another's (tenacity's own jitters add to it or start at 0)."""

    def __init__(self, inner: tenacity.wait.wait_base) -> None:
        self.inner = inner

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.inner(retry_state) * (0.5 + random.random() / 2)


def _error(error: BaseException) -> dict[str, Any]:
    return {"error": f"{type(error).__name__}: {error}"[:500]}


@dataclass(frozen=True)
class Policy:
    """A caller's retry numbers and rule; `call` and `attempts` apply it (see the module docstring)."""

    retryable: Callable[[Exception], bool]
    backoff: Backoff
    attempts: int | None = None
    deadline: float | None = None
    event: str = "call failed; retrying"
    # The caller's logger, with what every retry line of the policy carries bound to it.
    log: Any = _LOG
    describe: Callable[[Exception], Mapping[str, Any]] = _error

    async def call(
        self, what: str, call: Callable[[], Awaitable[T]], *, failed_first: Exception | None = None
    ) -> T:
        """`call()`'s result, retried as the policy says; else its last error, unchanged.

        `failed_first`: the retryable error of a first attempt the caller made itself (to try once before
        leaving the rest to a background task): it counts as attempt 1, logged and waited after as any."""
        earlier = [failed_first] if failed_first is not None else []

        async def attempt() -> T:  # tenacity awaits only coroutine functions; a gRPC call is an awaitable
            if earlier:
                raise earlier.pop()
            return await call()

        return await self.retrying(what)(attempt)

    def retrying(self, what: str) -> tenacity.AsyncRetrying:
        # A new tenacity object per call: its state is shared by whoever iterates the same one.
        stop: tenacity.stop.stop_base = tenacity.stop_never
        if self.attempts is not None:
            stop = tenacity.stop_after_attempt(self.attempts)
        if self.deadline is not None:
            stop = stop | tenacity.stop_after_delay(self.deadline)
        return tenacity.AsyncRetrying(
            stop=stop,
            wait=self.backoff.wait(),
            retry=tenacity.retry_if_exception(
                lambda error: isinstance(error, Exception) and self.retryable(error)
            ),
            before_sleep=lambda state: self._log(what, state),
            reraise=True,
        )

    def _log(self, what: str, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(error, Exception)  # only errors `retryable` accepted come here
        self.log.warning(
            self.event,
            call=what,
            **self.describe(error),
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 2),
        )
