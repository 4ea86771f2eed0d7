"""Client for OpenAI-compatible chat servers (TGI's Messages API, vLLM, llama.cpp server, OpenAI).

The server applies the model's own chat template. How a JSON schema is passed depends on
`json_mode`:

* ``"grammar"`` - ``response_format={"type": "json", "value": schema}`` (TGI, and what most
  open servers accept);
* ``"json_object"`` - ``{"type": "json_object"}`` plus the schema in the system prompt;
* ``"none"`` - the schema in the system prompt only.

(OpenAI's own ``{"type": "json_schema", ...}`` is not offered: huggingface_hub rewrites it into the
TGI form above before sending, so ``"grammar"`` is what goes on the wire either way.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from huggingface_hub import AsyncInferenceClient

from asiarch.common.llm._retry import call_with_retries
from asiarch.common.llm.base import LLM, JsonMode, LLMGenerationFailed, Message, with_schema_instruction


class OpenAICompatibleClient(LLM):
    """`LLM` backed by a `/v1/chat/completions` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        *,
        json_mode: JsonMode = "grammar",
        backoff_seconds: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.json_mode: JsonMode = json_mode
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        # `/v1/chat/completions` is appended to base_url by the client (unless already there).
        self._client = AsyncInferenceClient(base_url=self.base_url, api_key=api_key, timeout=timeout)

    # No `start`: nothing to check up front; the first request reports an unreachable server.

    async def close(self) -> None:
        await self._client.close()

    def response_format(self, json_schema: dict[str, Any]) -> dict[str, Any] | None:
        if self.json_mode == "grammar":
            return {"type": "json", "value": json_schema}
        if self.json_mode == "json_object":
            return {"type": "json_object"}
        return None

    async def generate(
        self,
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        chat = list(messages)
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "temperature": temperature}
        if stop:
            kwargs["stop"] = list(stop)
        if json_schema is not None:
            response_format = self.response_format(json_schema)
            if response_format is not None:
                kwargs["response_format"] = response_format
            if self.json_mode in ("json_object", "none"):
                chat = with_schema_instruction(chat, json_schema)
        payload = [message.as_dict() for message in chat]

        async def call() -> str:
            output = await self._client.chat_completion(payload, **kwargs)
            if not output.choices:
                raise LLMGenerationFailed(f"LLM server {self.base_url} returned no choices")
            return output.choices[0].message.content or ""

        return await call_with_retries(
            call, server=self.base_url, max_retries=self.max_retries, backoff_seconds=self.backoff_seconds
        )
