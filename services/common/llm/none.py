"""Backend used when no LLM is configured: every call fails fast; callers take their deterministic path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asiarch.common.llm.base import LLM, LLMUnavailable, Message


class NoLLM(LLM):
    """`LLM` whose `generate` raises `LLMUnavailable("no LLM configured")` immediately."""

    async def generate(
        self,
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        raise LLMUnavailable("no LLM configured")
