"""Per-call context shared by the server and client sides: request id and deadline.

The server interceptor sets these when a call arrives; the client interceptor
reads them when the handler calls another service, so the request id and the
remaining deadline travel with the work without being passed by hand.
"""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar, Token

REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"

_request_id: ContextVar[str | None] = ContextVar("asiarch_request_id", default=None)
_deadline: ContextVar[float | None] = ContextVar("asiarch_deadline", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return _request_id.get()


def remaining_seconds() -> float | None:
    """Seconds left of the incoming call's deadline; None when it has none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def enter_call(request_id: str, time_remaining: float | None) -> tuple[Token, Token]:
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    return _request_id.set(request_id), _deadline.set(deadline)


def exit_call(tokens: tuple[Token, Token]) -> None:
    request_token, deadline_token = tokens
    _request_id.reset(request_token)
    _deadline.reset(deadline_token)
