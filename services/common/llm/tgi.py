"""Client for Hugging Face Text Generation Inference (TGI) via its native `/generate` route.

Chat template
-------------
TGI's `/generate` takes raw text, so messages are rendered with ChatML, the template of
the SmolLM2, Qwen and many other instruct models::

    <|im_start|>system
    {content}<|im_end|>
    <|im_start|>user
    {content}<|im_end|>
    <|im_start|>assistant

`<|im_end|>` is always sent as a stop sequence. Pass `template=` for another model family
(or use `OpenAICompatibleClient`, which lets the server apply the model's own template).

Token limits
------------
`start()` reads `max_input_tokens` and `max_total_tokens` from `/info`. TGI rejects a request
whose prompt plus `max_new_tokens` exceeds `max_total_tokens`; without the tokenizer the prompt
length is estimated conservatively (one token per 3 characters), and `max_new_tokens` is clamped
to what is left, never below 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
import structlog
from huggingface_hub import AsyncInferenceClient

from asiarch.common.llm._retry import call_with_retries
from asiarch.common.llm.base import LLM, LLMError, LLMUnavailable, Message

log = structlog.get_logger(__name__)

CHATML_STOP = "<|im_end|>"
#: TGI's default `--max-stop-sequences`.
MAX_STOP_SEQUENCES = 4
CHARS_PER_TOKEN_ESTIMATE = 3


def render_chatml(messages: Sequence[Message]) -> str:
    """Render messages with ChatML and open the assistant's turn."""
    parts = [f"<|im_start|>{message.role}\n{message.content}<|im_end|>\n" for message in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


class TGIClient(LLM):
    """`LLM` backed by a TGI server; JSON output is enforced with TGI's grammar support."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 120.0,
        max_retries: int = 3,
        *,
        backoff_seconds: float = 0.5,
        template: Callable[[Sequence[Message]], str] = render_chatml,
        template_stop: Sequence[str] = (CHATML_STOP,),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.template = template
        self.template_stop = list(template_stop)
        self.max_input_tokens: int | None = None
        self.max_total_tokens: int | None = None
        self.info: dict[str, Any] = {}
        self._client = AsyncInferenceClient(base_url=self.base_url, timeout=timeout)

    async def start(self) -> None:
        """Check `/health`, read token limits from `/info`; LLMUnavailable when the server is not ready."""

        async def probe() -> dict[str, Any]:
            async with httpx2.AsyncClient(timeout=self.timeout) as http:
                health = await http.get(f"{self.base_url}/health")
                health.raise_for_status()
                info = await http.get(f"{self.base_url}/info")
                info.raise_for_status()
                data = info.json()
                return data if isinstance(data, dict) else {}

        try:
            self.info = await call_with_retries(
                probe,
                server=self.base_url,
                max_retries=self.max_retries,
                backoff_seconds=self.backoff_seconds,
            )
        except LLMError as error:
            raise LLMUnavailable(f"TGI is not ready: {error.message}") from error
        self.max_input_tokens = _int_or_none(
            self.info.get("max_input_tokens", self.info.get("max_input_length"))
        )
        self.max_total_tokens = _int_or_none(self.info.get("max_total_tokens"))
        log.info(
            "TGI ready",
            url=self.base_url,
            model=self.info.get("model_id"),
            max_input_tokens=self.max_input_tokens,
            max_total_tokens=self.max_total_tokens,
        )

    async def close(self) -> None:
        await self._client.close()

    def clamp_max_new_tokens(self, prompt: str, max_tokens: int) -> int:
        """`max_tokens` reduced so that the estimated prompt plus it fits `max_total_tokens`."""
        if self.max_total_tokens is None:
            return max(1, max_tokens)
        estimate = math.ceil(len(prompt) / CHARS_PER_TOKEN_ESTIMATE)
        if self.max_input_tokens is not None:
            estimate = min(estimate, self.max_input_tokens)
        return max(1, min(max_tokens, self.max_total_tokens - estimate))

    async def generate(
        self,
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        prompt = self.template(messages)
        stops = list(dict.fromkeys([*(stop or ()), *self.template_stop]))[:MAX_STOP_SEQUENCES]
        max_new_tokens = self.clamp_max_new_tokens(prompt, max_tokens)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "stop": stops}
        if temperature > 0:  # TGI rejects temperature <= 0; greedy is its default.
            kwargs["temperature"] = temperature
            kwargs["do_sample"] = True
        if json_schema is not None:
            kwargs["grammar"] = {"type": "json", "value": json_schema}

        async def call() -> str:
            # The model URL is called as-is, so this targets TGI's native route.
            text = await self._client.text_generation(prompt, model=f"{self.base_url}/generate", **kwargs)
            return str(text)

        text = await call_with_retries(
            call, server=self.base_url, max_retries=self.max_retries, backoff_seconds=self.backoff_seconds
        )
        return _strip_stops(text, stops)


def _strip_stops(text: str, stops: Sequence[str]) -> str:
    """TGI includes the matched stop sequence in `generated_text`; cut the text at the first one."""
    cut = len(text)
    for sequence in stops:
        index = text.find(sequence)
        if index >= 0:
            cut = min(cut, index)
    return text[:cut]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
