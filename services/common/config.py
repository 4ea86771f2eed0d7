"""Configuration from environment variables, validated at start-up.

Every setting is an `ASIARCH_*` variable. A bad value stops the process before
it serves anything, with a message that names the variable, so a typo in a
manifest shows up in the pod's first log line rather than as odd behaviour.
TLS files are read (and checked to hold PEM) when a server starts or a channel
opens, never later, and a file that is missing, unreadable or not PEM is
reported the same way, naming the variable and the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from asiarch.common.errors import ConfigError

ENV_PREFIX = "ASIARCH_"
MIB = 1024 * 1024
# What a PEM file of each kind must contain; checked at start so that a swapped or
# empty file is named then, not discovered as a failed handshake on the first call.
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
PEM_PRIVATE_KEY = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class TLSFiles:
    """The PEM bytes of ASIARCH_TLS_*; cert and key are both None or both set."""

    cert: bytes | None
    key: bytes | None
    ca: bytes | None


def _read_pem(variable: str, path: Path, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if marker not in data:
        raise ConfigError(f"{variable}: {str(path)!r} holds no PEM block with {marker.decode().strip('-')}")
    return data


class TLSSettings(BaseSettings):
    """TLS of every gRPC connection, for servers and clients alike.

    A server serves TLS when given a certificate and key, and with a CA also requires
    client certificates that CA signed (mTLS). A client speaks TLS when given a CA or a
    certificate: the CA (else the system's roots) verifies servers, and the certificate
    and key, when given, are presented to servers that ask for one.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    tls_cert: Path | None = Field(
        default=None,
        description=(
            "PEM certificate (chain) a server presents, and its outgoing calls present as a client "
            "certificate; with ASIARCH_TLS_KEY the server accepts TLS only."
        ),
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of ASIARCH_TLS_CERT.")
    tls_ca: Path | None = Field(
        default=None,
        description=(
            "PEM CA bundle. A server then requires client certificates it signed (mTLS); "
            "a client verifies servers with it (default: the system's roots)."
        ),
    )

    @field_validator("tls_cert", "tls_key", "tls_ca", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # compose writes `${ASIARCH_TLS_CA:-}` as an empty string, which is not the current directory.
        return None if value == "" else value

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("CERT", "KEY") if self.tls_key is None else ("KEY", "CERT")
            raise ValueError(
                f"ASIARCH_TLS_{given} is set but ASIARCH_TLS_{missing} is not: a certificate needs its key"
            )
        return self

    def read(self) -> TLSFiles | None:
        """The files' bytes, or None when TLS is off (neither a certificate nor a CA)."""
        if self.tls_cert is None and self.tls_ca is None:
            return None
        cert = key = ca = None
        if self.tls_cert is not None and self.tls_key is not None:
            cert = _read_pem(env_name(TLSSettings, "tls_cert"), self.tls_cert, PEM_CERTIFICATE)
            key = _read_pem(env_name(TLSSettings, "tls_key"), self.tls_key, PEM_PRIVATE_KEY)
        if self.tls_ca is not None:
            ca = _read_pem(env_name(TLSSettings, "tls_ca"), self.tls_ca, PEM_CERTIFICATE)
        return TLSFiles(cert=cert, key=key, ca=ca)


class ServerSettings(TLSSettings):
    """Settings every service shares (transport, TLS, logging, auth, shutdown, load)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 0.0.0.0 (or [::]) inside containers.",
    )
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port to listen on; 0 picks a free one; unset uses the service's default port.",
    )
    metrics_port: int | Literal["off"] | None = Field(
        default=None,
        description=(
            "Port of the Prometheus endpoint (http://HOST:PORT/metrics); 0 picks a free one (logged), off "
            "serves none. Unset: the service's own metrics port (9451 selector, 9452 researcher, 9453 "
            "engineer, 9454 analyst) when it listens on its default gRPC port, else a free one."
        ),
    )
    max_receive_message_mb: float = Field(
        default=16, gt=0, le=2047, description="Largest request accepted, MiB."
    )
    max_send_message_mb: float = Field(default=16, gt=0, le=2047, description="Largest response sent, MiB.")
    shutdown_grace_seconds: float = Field(
        default=10,
        ge=0,
        description="After SIGTERM, how long in-flight calls may run before they are cancelled.",
    )
    shutdown_drain_seconds: float = Field(
        default=0,
        ge=0,
        description=(
            "After SIGTERM, how long health reports NOT_SERVING while new calls are still accepted, "
            "so load balancers stop routing here before the port closes."
        ),
    )
    max_concurrent_rpcs: int = Field(
        default=100,
        ge=1,
        description=(
            "Calls handled at once, health checks included; a call beyond it is answered "
            "RESOURCE_EXHAUSTED at once instead of waiting."
        ),
    )
    max_connection_age_seconds: float = Field(
        default=0,
        ge=0,
        description=(
            "Close each client connection after this long (0 = never); calls in flight finish first. "
            "Clients then reconnect and resolve the address again, so round-robin clients reach "
            "replicas added since (the scaled engineer)."
        ),
    )
    auth_token: SecretStr | None = Field(
        default=None,
        description="When set, every call except health checks needs 'authorization: Bearer <token>'.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    log_format: Literal["json", "console"] = Field(
        default="json", description="json for machines (default), console for people."
    )

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _port_or_off(cls, value: object) -> object:
        # One message for every bad value, instead of one per member of the union.
        text = str(value).strip().lower() if value is not None else None
        if text is None or text == "off":
            return text
        if not text.isdigit() or int(text) > 65535:
            raise ValueError("must be a port number (0-65535; 0 picks a free one) or off")
        return int(text)

    @model_validator(mode="after")
    def _client_certificates_need_tls(self) -> Self:
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError(
                "ASIARCH_TLS_CA makes a server require client certificates (mTLS), which needs TLS: "
                "set ASIARCH_TLS_CERT and ASIARCH_TLS_KEY too"
            )
        return self

    @property
    def max_receive_message_bytes(self) -> int:
        return int(self.max_receive_message_mb * MIB)

    @property
    def max_send_message_bytes(self) -> int:
        return int(self.max_send_message_mb * MIB)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def env_name(settings_type: type[BaseSettings], field: str) -> str:
    prefix = settings_type.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def load_settings(settings_type: type[SettingsT], **overrides: object) -> SettingsT:
    """Read settings from the environment; raise ConfigError naming each bad variable.

    `overrides` (e.g. command-line flags) win over the environment.
    """
    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            if not field:  # a check across variables: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            given = error.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            problems.append(f"{env_name(settings_type, field)}: {error['msg']}{shown}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
