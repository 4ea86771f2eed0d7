"""Choose the LLM backend from `ASIARCH_LLM_*` environment variables.

Cheap to import: a backend's module (huggingface_hub, transformers) loads only when `create_llm`
builds that backend, so a service or command configured with no LLM never pays for them.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from asiarch.common.errors import ConfigError
from asiarch.common.llm.base import LLM, JsonMode
from asiarch.common.llm.none import NoLLM

ENV_PREFIX = "ASIARCH_LLM_"
Backend = Literal["none", "local", "tgi", "openai"]
BACKENDS: tuple[str, ...] = get_args(Backend)  # the commands' --llm choices


class LLMSettings(BaseSettings):
    """Which LLM to use. Load with `asiarch.common.config.load_settings(LLMSettings)` for named errors."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    backend: Backend = Field(
        default="none", description="none: no LLM (deterministic paths); local: in-process GGUF; tgi; openai."
    )
    url: str | None = Field(default=None, description="Server base URL (tgi, openai).")
    model: str | None = Field(
        default=None, description="Model name (openai, required); GGUF file path (local, optional)."
    )
    api_key: SecretStr | None = Field(default=None, description="Bearer token for the server (openai).")
    timeout_seconds: float = Field(default=120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(default=3, ge=0, le=20, description="Retries on 429/503/timeouts.")
    json_mode: JsonMode = Field(default="grammar", description="How an openai backend is asked for JSON.")


def _require(value: str | None, field: str, backend: str) -> str:
    if not value:
        raise ConfigError(f"{ENV_PREFIX}{field.upper()} is required when {ENV_PREFIX}BACKEND={backend}")
    return value


def create_llm(settings: LLMSettings | None = None) -> LLM:
    """Build the configured backend (not started: await its `start()` where it has one).

    Raises ConfigError naming the missing variable.
    """
    settings = settings if settings is not None else LLMSettings()
    if settings.backend == "none":
        return NoLLM()
    if settings.backend == "local":
        from asiarch.common.llm.local import LocalClient

        return LocalClient(model_path=settings.model, max_seconds=settings.timeout_seconds)
    if settings.backend == "tgi":
        from asiarch.common.llm.tgi import TGIClient

        return TGIClient(
            _require(settings.url, "url", "tgi"),
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
        )
    from asiarch.common.llm.openai_compat import OpenAICompatibleClient

    return OpenAICompatibleClient(
        _require(settings.url, "url", "openai"),
        _require(settings.model, "model", "openai"),
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
        json_mode=settings.json_mode,
    )
