"""Configuration from environment variables, validated at start-up.

Every setting is an `ASIARCH_*` variable. A bad value stops the process before
it serves anything, with a message that names the variable, so a typo in a
manifest shows up in the pod's first log line rather than as odd behaviour.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asiarch.common.errors import ConfigError

ENV_PREFIX = "ASIARCH_"
MIB = 1024 * 1024


class ServerSettings(BaseSettings):
    """Settings every service shares (transport, logging, auth, shutdown)."""

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
            field = ".".join(str(part) for part in error["loc"]) or "?"
            given = error.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            problems.append(f"{env_name(settings_type, field)}: {error['msg']}{shown}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
