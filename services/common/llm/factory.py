"""The LLM settings (`ASIARCH_LLM_*`) and the backend they choose.

`LLMSettings` is the one owner of the backend names (`Backend`) and of the variables that
configure an LLM. A service that uses an LLM has its settings inherit `LLMSettings`, so that
the environment is read once, with the service's own settings, and `create_llm` builds the
backend from that object.

Cheap to import: a backend's module (huggingface_hub, transformers) loads only when `create_llm`
builds that backend, so a service or command configured with no LLM never pays for them.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from asiarch.common.config import ENV_PREFIX, env_name
from asiarch.common.errors import ConfigError
from asiarch.common.llm.base import LLM, JsonMode
from asiarch.common.llm.none import NoLLM


class Backend(StrEnum):
    """The LLM backends: the values of ASIARCH_LLM_BACKEND and of the commands' --llm."""

    NONE = "none"  # no LLM: the services take their deterministic paths
    LOCAL = "local"  # a GGUF model run in the process
    TGI = "tgi"  # Text Generation Inference's native API
    OPENAI = "openai"  # an OpenAI-compatible chat server


class LLMSettings(BaseSettings):
    """Which LLM to use. Load with `asiarch.common.config.load_settings` for errors that name the variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    llm_backend: Backend = Field(
        default=Backend.NONE,
        description="none: no LLM (deterministic paths); local: in-process GGUF; tgi; openai.",
    )
    llm_url: str | None = Field(default=None, description="Server base URL (tgi, openai).")
    llm_model: str | None = Field(
        default=None, description="Model name (openai, required); GGUF file path (local, optional)."
    )
    llm_api_key: SecretStr | None = Field(default=None, description="Bearer token for the server (openai).")
    llm_timeout_seconds: float = Field(default=120.0, gt=0, description="Per-request timeout.")
    llm_max_retries: int = Field(default=3, ge=0, le=20, description="Retries on 429/503/timeouts.")
    llm_json_mode: JsonMode = Field(default="grammar", description="How an openai backend is asked for JSON.")


def _require(settings: LLMSettings, field: str) -> str:
    value = getattr(settings, field)
    if not value:
        raise ConfigError(
            f"{env_name(LLMSettings, field)} is required when "
            f"{env_name(LLMSettings, 'llm_backend')}={settings.llm_backend}"
        )
    return str(value)


def create_llm(settings: LLMSettings) -> LLM:
    """Build the backend `settings` choose (not started: await its `start()`).

    Raises ConfigError naming the missing variable.
    """
    backend = settings.llm_backend
    if backend == Backend.NONE:
        return NoLLM()
    if backend == Backend.LOCAL:
        from asiarch.common.llm.local import LocalClient

        return LocalClient(model_path=settings.llm_model, max_seconds=settings.llm_timeout_seconds)
    if backend == Backend.TGI:
        from asiarch.common.llm.tgi import TGIClient

        return TGIClient(
            _require(settings, "llm_url"),
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
    from asiarch.common.llm.openai_compat import OpenAICompatibleClient

    return OpenAICompatibleClient(
        _require(settings, "llm_url"),
        _require(settings, "llm_model"),
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        json_mode=settings.llm_json_mode,
    )
