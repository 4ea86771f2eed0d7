"""Researcher settings (ASIARCH_* environment variables, on top of the shared server and LLM settings).

The LLM settings (ASIARCH_LLM_*) are part of this object, so the environment is read once, when the
service starts, and the lifespan builds the LLM from the settings it is given.
"""

from __future__ import annotations

from pydantic import Field

from asiarch.common.config import ServerSettings
from asiarch.common.llm import LLMSettings


class ResearcherSettings(ServerSettings, LLMSettings):
    analyst_address: str | None = Field(
        default=None, description="host:port of the analyst (knowledge retrieval, novelty); unset = skipped."
    )
    researcher_novelty_threshold: float = Field(
        default=0.95, gt=0, le=1, description="Rewrite a proposal whose motivation is at least this similar."
    )
    researcher_max_rewrites: int = Field(default=3, ge=0, le=20, description="Bounded novelty rewrites.")
    researcher_llm_timeout_seconds: float = Field(
        default=300,
        gt=0,
        description="Time for one LLM proposal (all attempts); then a DSL mutation instead.",
    )
    researcher_llm_attempts: int = Field(default=2, ge=1, le=10, description="Schema-valid answer attempts.")
