"""Errors a service raises on purpose, each carrying its gRPC status code.

Handlers raise these; the server interceptor turns them into the status with
the message as details, cut by `status_details` to at most MAX_DETAILS_CHARS
characters, so a message that quotes a huge value still reaches the client
(the details travel in a trailer that gRPC caps at a few KiB). Anything else
that escapes a handler becomes INTERNAL with a generic message, so tracebacks
never reach clients.
"""

from __future__ import annotations

import grpc

# Percent-encoded in the grpc-message trailer a character may take 12 bytes (4 UTF-8
# bytes, each %XX); 512 of them stay within gRPC's default 8 KiB of metadata.
MAX_DETAILS_CHARS = 512
_OMITTED = " … [{n} characters omitted] … "


def status_details(message: str, limit: int = MAX_DETAILS_CHARS) -> str:
    """The message as status details: whole when short, else its start and end around a marker.

    The start names the field and the end often lists the valid values, so both are kept and
    the middle, where a quoted value sits, goes.
    """
    if len(message) <= limit:
        return message
    marker = _OMITTED.format(n=len(message))
    keep = limit - len(marker)
    head, tail = keep * 2 // 3, keep - keep * 2 // 3
    marker = _OMITTED.format(n=len(message) - head - tail)
    return message[:head] + marker + message[len(message) - tail :]


class ServiceError(Exception):
    """Base class: an error whose message is safe and useful to send to the client."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request is malformed; the message says which field and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    """A referenced entity does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    """The request is valid but the system is not in a state to serve it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """A quota or a queue is full; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """A dependency (database, another service) cannot be reached; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    """No time is left of the caller's deadline for the work still to do."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ConfigError(Exception):
    """Configuration from the environment is invalid; the message names the variable."""


class Unauthenticated(ServiceError):
    """The call carries no bearer token or the wrong one."""

    code = grpc.StatusCode.UNAUTHENTICATED
