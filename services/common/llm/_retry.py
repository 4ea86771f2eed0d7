"""Retry and error mapping shared by the HTTP backends (TGI and OpenAI-compatible)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx2
import structlog
from huggingface_hub.errors import (
    HfHubHTTPError,
    InferenceTimeoutError,
    OfflineModeIsEnabled,
    TextGenerationError,
)

from asiarch.common.llm.base import LLMError, LLMGenerationFailed, LLMRequestRejected, LLMUnavailable
from asiarch.common.retry import Backoff, Policy

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Statuses worth retrying: overloaded (429) and temporarily unavailable (502/503/504).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: What a call to an LLM server raises when the request failed on the way or at the server.
HTTP_ERRORS = (HfHubHTTPError, httpx2.HTTPError, InferenceTimeoutError)


def _status_of(error: BaseException) -> int | None:
    """The HTTP status behind an error from huggingface_hub (directly or as its cause)."""
    seen: BaseException | None = error
    while seen is not None:
        response = getattr(seen, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
        seen = seen.__cause__
    return None


def _server_message(error: BaseException) -> str:
    """The server's own error text: TGI's/OpenAI's `error` field when present, else the exception text."""
    if isinstance(error, TextGenerationError) and error.args and error.args[0]:
        return str(error.args[0])
    seen: BaseException | None = error
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None:
            try:
                payload = response.json()
            except (json.JSONDecodeError, ValueError, AttributeError, httpx2.ResponseNotRead):
                payload = None
            if isinstance(payload, dict):
                detail = payload.get("error") or payload.get("message") or payload.get("detail")
                if isinstance(detail, dict):  # OpenAI: {"error": {"message": ...}}
                    detail = detail.get("message")
                if detail:
                    return str(detail)
            text = getattr(response, "text", "")
            if text:
                return str(text)[:500]
        seen = seen.__cause__
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def map_error(error: Exception, server: str) -> LLMError:
    """Turn an exception from a call to `server` into the LLMError a caller sees."""
    status = _status_of(error)
    detail = _server_message(error)
    if isinstance(error, InferenceTimeoutError | httpx2.TimeoutException):
        return LLMUnavailable(f"LLM server {server} timed out")
    if isinstance(error, httpx2.TransportError):
        return LLMUnavailable(f"LLM server {server} cannot be reached: {error}")
    if status == 424:
        return LLMGenerationFailed(f"LLM server {server} failed while generating: {detail}")
    if status in RETRY_STATUSES:
        return LLMUnavailable(f"LLM server {server} is unavailable (HTTP {status}): {detail}")
    if status is not None and 400 <= status < 500:
        return LLMRequestRejected(f"LLM server {server} rejected the request (HTTP {status}): {detail}")
    if status is not None:
        return LLMError(f"LLM server {server} failed (HTTP {status}): {detail}")
    return LLMError(f"LLM call to {server} failed: {type(error).__name__}: {detail}")


def is_retryable(error: Exception) -> bool:
    if isinstance(error, InferenceTimeoutError | httpx2.TimeoutException | httpx2.TransportError):
        return True
    return _status_of(error) in RETRY_STATUSES


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    server: str,
    max_retries: int,
    backoff_seconds: float,
    max_backoff_seconds: float = 30.0,
) -> T:
    """Run `call`, retrying up to `max_retries` times with exponential backoff on 429/5xx/timeouts.

    Any failure surfaces as an `LLMError` (see `map_error`).
    """
    policy = Policy(
        _retryable,
        Backoff(backoff_seconds, cap=max_backoff_seconds),
        attempts=max_retries + 1,
        event="LLM server unavailable; retrying",
        log=log,
        describe=lambda error: {"error": _server_message(error), "retries": max_retries},
    )
    try:
        return await policy.call(server, call)
    except OfflineModeIsEnabled as error:
        # HF_HUB_OFFLINE=1 makes huggingface_hub refuse every request, even to a local server.
        message = f"LLM server {server} cannot be called: HF_HUB_OFFLINE is set ({error})"
        raise LLMUnavailable(message) from error
    except HTTP_ERRORS as error:
        raise map_error(error, server) from error


def _retryable(error: Exception) -> bool:
    return isinstance(error, HTTP_ERRORS) and is_retryable(error)
