"""Channels to other services, with TLS, request-id, auth and deadline propagation.

Every client in the project opens its channels with `open_channel` (handlers
calling another service, the orchestrator, health checks): each outgoing call
then carries the incoming request id, the bearer token, and a timeout no
longer than what is left of the incoming call's deadline (minus a margin for
the work that follows the downstream call), and the channel speaks TLS, with a
client certificate for mTLS, as ASIARCH_TLS_* say (`channel_credentials`). With tracing on
(asiarch.common.tracing), each call is also a client span whose W3C `traceparent` goes with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

from asiarch.common import tracing
from asiarch.common.config import TLSSettings, load_settings
from asiarch.common.context import (
    AUTHORIZATION_HEADER,
    REQUEST_ID_HEADER,
    current_request_id,
    new_request_id,
    remaining_seconds,
)
from asiarch.common.errors import DeadlineExceeded

MIB = 1024 * 1024
DEFAULT_DEADLINE_MARGIN = 0.05  # seconds kept back for the caller's own work


def propagate_timeout(timeout: float | None, margin: float = DEFAULT_DEADLINE_MARGIN) -> float | None:
    """The timeout an outgoing call may use: its own, capped by the incoming deadline.

    Raises DeadlineExceeded when the incoming call has no time left, so work
    that cannot finish in time is not started.
    """
    remaining = remaining_seconds()
    if remaining is None:
        return timeout
    budget = remaining - margin
    if budget <= 0:
        raise DeadlineExceeded(f"the caller's deadline leaves no time for this call ({remaining:.3f} s left)")
    return budget if timeout is None else min(timeout, budget)


def outgoing_metadata(
    metadata: Sequence[tuple[str, str | bytes]] | None, auth_token: str | None
) -> list[tuple[str, str | bytes]]:
    """Metadata with the request id (current or new) and the bearer token added."""
    merged = list(metadata or ())
    keys = {key for key, _ in merged}
    if REQUEST_ID_HEADER not in keys:
        merged.append((REQUEST_ID_HEADER, current_request_id() or new_request_id()))
    if auth_token and AUTHORIZATION_HEADER not in keys:
        merged.append((AUTHORIZATION_HEADER, f"Bearer {auth_token}"))
    return merged


class _Propagating:
    def __init__(self, auth_token: str | None, margin: float) -> None:
        self._auth_token = auth_token
        self._margin = margin

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=propagate_timeout(details.timeout, self._margin),
            metadata=grpc.aio.Metadata(*outgoing_metadata(details.metadata, self._auth_token)),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


# grpc.aio sorts interceptors by the first interface they implement, so each
# call shape needs its own class.
class _UnaryUnary(_Propagating, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_Propagating, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamUnary(_Propagating, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStream(_Propagating, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


# gRPC's default policy (pick_first) sends every call down one connection, so a
# target that resolves to several servers (`dns:///engineer-pool:50053` on a
# headless Kubernetes Service, `ipv4:a:p,b:p`) would load only the first one.
# round_robin spreads calls over all of them and is the same for one address.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(max_message_mb: float = 16) -> list[tuple[str, int | str]]:
    size = int(max_message_mb * MIB)
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.service_config", ROUND_ROBIN),
    ]


def channel_credentials(tls: TLSSettings | None = None) -> grpc.ChannelCredentials | None:
    """TLS credentials for outgoing calls (None: plaintext); `tls` defaults to ASIARCH_TLS_*.

    TLS is on when a CA or a certificate is given: the CA (else the system's roots) verifies
    the server, whose certificate must name the host of the address; the certificate and key
    are presented when the server asks for one (mTLS). The files are read on every call, so a
    renewed certificate is used by the next channel; a missing one raises ConfigError.
    """
    files = (tls or load_settings(TLSSettings)).read()
    if files is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca, private_key=files.key, certificate_chain=files.cert
    )


def open_channel(
    address: str,
    *,
    auth_token: str | None = None,
    max_message_mb: float = 16,
    deadline_margin: float = DEFAULT_DEADLINE_MARGIN,
    tls: TLSSettings | None = None,
) -> grpc.aio.Channel:
    """An aio channel that propagates context, over TLS when ASIARCH_TLS_* (or `tls`) ask for it.

    `address` is "host:port" or any gRPC target; calls are spread round-robin
    over every server the target resolves to.
    """
    # Ours first (outermost): a call refused for lack of time never opens a span.
    interceptors: list[grpc.aio.ClientInterceptor] = [
        cls(auth_token, deadline_margin) for cls in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
    ]
    interceptors += tracing.client_interceptors()
    options = channel_options(max_message_mb)
    credentials = channel_credentials(tls)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
