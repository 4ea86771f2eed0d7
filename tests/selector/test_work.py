"""The selection worker: off the event loop, a bounded queue, work dropped when its call ends."""

from __future__ import annotations

import asyncio
import threading

import pytest

from asiarch.common.errors import DeadlineExceeded, ResourceExhausted
from asiarch.selector.work import Abandoned, Worker, checkpoint


def spin(stopped: threading.Event) -> None:
    """Work that only ends when a checkpoint raises; records that it did."""
    try:
        while True:
            checkpoint()
            stopped.wait(0.01)
    except Abandoned:
        stopped.set()
        raise


def blocker(release: threading.Event) -> None:
    release.wait(30)


async def test_the_event_loop_runs_while_the_work_does() -> None:
    worker = Worker(max_waiting=0)
    release = threading.Event()
    running = asyncio.ensure_future(worker.run(lambda: blocker(release), None))
    await asyncio.sleep(0.05)  # the loop is free: this returns although the work still runs
    assert not running.done()
    release.set()
    await running
    worker.close()


async def test_beyond_the_waiting_bound_calls_are_refused_at_once() -> None:
    worker = Worker(max_waiting=1)
    release = threading.Event()
    running = asyncio.ensure_future(worker.run(lambda: blocker(release), None))
    waiting = asyncio.ensure_future(worker.run(lambda: "waited", None))
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted, match="1 waiting; retry later"):
        await worker.run(lambda: "refused", None)
    release.set()
    assert await waiting == "waited"
    await running
    assert await worker.run(lambda: "accepted again", None) == "accepted again"
    worker.close()


async def test_work_whose_call_is_cancelled_stops_at_its_next_checkpoint() -> None:
    worker = Worker(max_waiting=0)
    stopped = threading.Event()
    call = asyncio.ensure_future(worker.run(lambda: spin(stopped), None))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.to_thread(stopped.wait, 30)
    worker.close()


async def test_work_waiting_when_its_call_is_cancelled_is_dropped() -> None:
    worker = Worker(max_waiting=1)
    release, stopped = threading.Event(), threading.Event()
    running = asyncio.ensure_future(worker.run(lambda: blocker(release), None))
    waiting = asyncio.ensure_future(worker.run(lambda: spin(stopped), None))  # ends only if dropped
    await asyncio.sleep(0.05)
    waiting.cancel()
    release.set()
    await running
    # One thread, first come first served: this runs once the cancelled work is gone (never
    # started, or stopped at its first checkpoint), and would wait forever if it were not.
    assert await asyncio.wait_for(worker.run(lambda: "next", None), 30) == "next"
    worker.close()


async def test_work_past_its_deadline_ends_deadline_exceeded() -> None:
    worker = Worker(max_waiting=0)
    stopped = threading.Event()
    with pytest.raises(DeadlineExceeded, match="deadline passed before the selection finished"):
        await worker.run(lambda: spin(stopped), 0.05)
    worker.close()


def test_checkpoint_outside_a_worker_does_nothing() -> None:
    checkpoint()
