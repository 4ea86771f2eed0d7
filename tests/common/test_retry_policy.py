"""The one retry policy (asiarch.common.retry): attempts, what is retried, the waits, a line per retry."""

from __future__ import annotations

import asyncio

import pytest
import tenacity
from structlog.testing import capture_logs
from support import Flaky

from asiarch.common.retry import Backoff, Policy


def waits(backoff: Backoff, retries: int) -> list[float]:
    wait = backoff.wait()
    state = tenacity.RetryCallState(None, None, (), {})
    found = []
    for attempt in range(1, retries + 1):
        state.attempt_number = attempt
        found.append(wait(state))
    return found


def os_errors(error: Exception) -> bool:
    return isinstance(error, OSError)


FAST = Backoff(0.001)


def test_waits_double_up_to_the_cap_or_grow_by_the_step() -> None:
    assert waits(Backoff(1.0, cap=5.0), 5) == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert waits(Backoff(0.2), 4) == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert waits(Backoff(10.0, step=5.0, cap=60.0), 12) == [10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 60]


def test_jittered_waits_are_between_half_and_all_of_the_step() -> None:
    drawn = [waits(Backoff(8.0, cap=8.0, jitter=True), 1)[0] for _ in range(200)]
    assert all(4.0 <= w <= 8.0 for w in drawn)
    assert len(set(drawn)) > 1  # drawn, not fixed


async def test_retryable_errors_are_retried_and_each_retry_is_logged() -> None:
    call = Flaky(OSError("busy"), OSError("busy"))
    with capture_logs() as logs:
        assert await Policy(os_errors, FAST, attempts=3, event="it failed").call("thing", call) == "answer"
    assert call.calls == 3
    lines = [(e["event"], e["call"], e["attempt"]) for e in logs]
    assert lines == [("it failed", "thing", 1), ("it failed", "thing", 2)]
    assert logs[0]["error"] == "OSError: busy" and "wait_seconds" in logs[0]


async def test_the_last_error_is_raised_unchanged_when_attempts_are_spent() -> None:
    last = OSError("still busy")
    call = Flaky(OSError("busy"), last, OSError("never reached"))
    with pytest.raises(OSError, match="still busy") as caught:
        await Policy(os_errors, FAST, attempts=2).call("thing", call)
    assert caught.value is last and call.calls == 2


async def test_other_errors_are_raised_at_once() -> None:
    call = Flaky(ValueError("a verdict"))
    with pytest.raises(ValueError, match="a verdict"):
        await Policy(os_errors, FAST, attempts=5).call("thing", call)
    assert call.calls == 1


async def test_no_retry_starts_after_the_deadline() -> None:
    call = Flaky(*[OSError("down")] * 1000)
    with pytest.raises(OSError, match="down"):
        await Policy(os_errors, Backoff(0.01), deadline=0.05).call("thing", call)
    assert 1 < call.calls < 1000


async def test_a_cancelled_call_is_never_retried_even_by_a_rule_that_would() -> None:
    call = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await Policy(lambda error: True, FAST, attempts=5).call("thing", call)
    assert call.calls == 1


async def test_a_first_attempt_the_caller_made_counts_as_attempt_one() -> None:
    call = Flaky()
    with capture_logs() as logs:
        policy = Policy(os_errors, FAST, attempts=2)
        assert await policy.call("thing", call, failed_first=OSError("at start-up")) == "answer"
    assert call.calls == 1  # attempt 2; the caller made attempt 1
    assert [(e["attempt"], e["error"]) for e in logs] == [(1, "OSError: at start-up")]
