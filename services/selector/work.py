"""Selections run off the event loop, one at a time, a bounded number waiting, and dropped when unwanted.

A selection is pure-Python CPU work (a Pareto front over thousands of candidates). Run on the event
loop it would stop everything else the process does: health checks, other calls, the shutdown
signal (issue 16: 21 s of a blocked loop). `Worker.run` hands it to one dedicated thread instead,
so the loop keeps serving while it runs. A thread, not a process pool: the work needs the request
(a process would have to receive it pickled) and gRPC's core does not survive a fork; the GIL hands
the loop its turn every few milliseconds, which is all health and scheduling need. One thread, since
more would only share the GIL.

Bounded: while `max_waiting` calls wait for the thread, the next is refused at once with
RESOURCE_EXHAUSTED (retry later) instead of joining an unbounded queue.

Dropped when unwanted: the work carries its call's deadline and an abandon flag that is set when
the call's handler is cancelled (client gone, deadline passed, server stopping). Long computations
call `checkpoint()` between steps; it raises there, so the thread stops within one step instead of
finishing what nobody will read, and work still waiting for the thread is dropped (before it starts,
or at its first checkpoint if the thread took it just as its call ended). Past the deadline
`checkpoint()` raises DeadlineExceeded, so the call ends DEADLINE_EXCEEDED, never OK late.
Outside a worker (tests, the pure strategy functions) `checkpoint()` does nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from asiarch.common.errors import DeadlineExceeded, ResourceExhausted

T = TypeVar("T")


class Abandoned(Exception):
    """The call this work was for has ended; nobody will read the result."""


@dataclass(frozen=True)
class _Work:
    deadline: float | None  # time.monotonic() value; None: the call has no deadline
    abandoned: threading.Event = field(default_factory=threading.Event)


_current: contextvars.ContextVar[_Work | None] = contextvars.ContextVar("asiarch_selection", default=None)


def checkpoint() -> None:
    """Raise if the call the running work is for has ended or its deadline has passed."""
    work = _current.get()
    if work is None:
        return
    if work.abandoned.is_set():
        raise Abandoned
    if work.deadline is not None and time.monotonic() > work.deadline:
        raise DeadlineExceeded("the call's deadline passed before the selection finished")


class Worker:
    """One thread for selections and a bound on the calls waiting for it; see the module docstring."""

    def __init__(self, max_waiting: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="selection")
        self._max_waiting = max_waiting
        self._admitted = 0  # running + waiting; only the event loop's thread changes it

    async def run(self, function: Callable[[], T], time_remaining: float | None) -> T:
        """function() on the worker thread; time_remaining is the call's deadline (None: none)."""
        if self._admitted > self._max_waiting:
            raise ResourceExhausted(
                f"the selector is busy: one selection running and {self._max_waiting} waiting; retry later"
            )
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        work = _Work(deadline)
        context = contextvars.copy_context()
        context.run(_current.set, work)

        def job() -> T:
            checkpoint()  # waited past its deadline, or its call ended while it waited
            return function()

        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, job)
        except asyncio.CancelledError:
            work.abandoned.set()
            raise
        finally:
            self._admitted -= 1

    def close(self) -> None:
        """Start no more work; what is running stops at its next checkpoint once its call is cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)
