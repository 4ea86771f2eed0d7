"""Errors a service raises on purpose, each carrying its gRPC status code.

Handlers raise these; the server interceptor turns them into the status with
the message as details. Anything else that escapes a handler becomes INTERNAL
with a generic message, so tracebacks never reach clients.
"""

from __future__ import annotations

import grpc


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
