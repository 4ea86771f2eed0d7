"""The LLM interface every backend implements, its errors, and structured output.

Callers depend on `LLM` only; `asiarch.common.llm.factory.create_llm` builds the
backend the settings choose. Every failure a caller should handle is an
`LLMError` with a message fit to show a user or log as-is:

* `LLMRequestRejected` - the server refused this request (bad parameters, prompt too long);
  retrying the same request will not help.
* `LLMUnavailable` - no answer could be had (no backend configured, server down or
  overloaded after retries, timeout); the caller should take its deterministic path.
* `LLMGenerationFailed` - the server accepted the request but generation failed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import pydantic
import structlog

# How an OpenAI-compatible server is asked for JSON (openai_compat.py explains each); here, not there,
# so reading the settings does not import huggingface_hub.
JsonMode = Literal["grammar", "json_object", "none"]

log = structlog.get_logger(__name__)

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@runtime_checkable
class LLM(Protocol):
    """An asynchronous text generator: `start()` once, `generate` any number of times, `close()` once.

    `json_schema`, when given, asks the backend to produce a JSON object matching it
    (enforced by grammar where the backend supports it, requested in the prompt otherwise).
    `temperature=0.0` means greedy decoding. The returned text never contains a stop sequence.
    A backend that subclasses `LLM` inherits `start` and `close` that do nothing.
    """

    async def start(self) -> None:
        """Get ready before the first call (load a model, check a server); LLMUnavailable when it cannot."""

    async def close(self) -> None:
        """Release what the backend holds (connections); it is not used afterwards."""

    async def generate(
        self,
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str: ...


class LLMError(Exception):
    """An LLM call failed; `message` is clear enough to show to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LLMRequestRejected(LLMError):
    """The server rejected the request itself (HTTP 4xx such as 422); do not retry it unchanged."""


class LLMUnavailable(LLMError):
    """No LLM could answer: none configured, unreachable, overloaded or timed out after retries."""


class LLMGenerationFailed(LLMError):
    """The server accepted the request but failed while generating (TGI's HTTP 424)."""


def schema_instruction(json_schema: dict[str, Any]) -> str:
    """The system-prompt text that asks for JSON matching `json_schema` (for backends without grammars)."""
    return "Reply with a single JSON object and nothing else. It must match this JSON schema:\n" + json.dumps(
        json_schema, separators=(",", ":")
    )


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(value) for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type_name(schema['items'])}"
    if isinstance(kind, str):
        return kind
    if "anyOf" in schema:
        return " or ".join(_type_name(option) for option in schema["anyOf"] if isinstance(option, dict))
    return "object" if "$ref" in schema else "any JSON value"


def compact_schema_instruction(json_schema: dict[str, Any]) -> str:
    """A short instruction listing the object's keys and types; small models follow it better than a schema.

    Falls back to `schema_instruction` for schemas that are not objects with properties.
    """
    properties = json_schema.get("properties")
    if json_schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return schema_instruction(json_schema)
    keys = ", ".join(f"{json.dumps(name)} ({_type_name(spec)})" for name, spec in properties.items())
    return f"Reply with only a JSON object with these keys: {keys}."


def with_schema_instruction(
    messages: Sequence[Message], json_schema: dict[str, Any], *, compact: bool = False
) -> list[Message]:
    """`messages` with the schema instruction appended to the system message (or added as one)."""
    instruction = compact_schema_instruction(json_schema) if compact else schema_instruction(json_schema)
    result = list(messages)
    if result and result[0].role == "system":
        result[0] = Message("system", result[0].content.rstrip() + "\n\n" + instruction)
    else:
        result.insert(0, Message("system", instruction))
    return result


def json_object_end(text: str, start: int = 0) -> int | None:
    """Index just past the JSON object whose `{` is the first one at or after `start`.

    Braces inside JSON strings (with escapes) are ignored. None when there is no `{`
    or the object is not closed yet.
    """
    begin = text.find("{", start)
    if begin < 0:
        return None
    depth = 0
    in_string = False
    escaped = False
    for index in range(begin, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first balanced `{...}` in `text` that parses as a JSON object; text around it is ignored."""
    start = 0
    while True:
        begin = text.find("{", start)
        if begin < 0:
            return None
        end = json_object_end(text, begin)
        if end is None:
            return None
        try:
            value = json.loads(text[begin:end])
        except json.JSONDecodeError:
            start = begin + 1
            continue
        if isinstance(value, dict):
            return value
        start = begin + 1


ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


async def generate_model(
    llm: LLM,
    messages: Sequence[Message],
    model_type: type[ModelT],
    attempts: int = 3,
    max_tokens: int = 512,
    temperature: float = 0.0,
) -> ModelT | None:
    """Ask `llm` for an instance of `model_type`; None when no valid one came back.

    Each attempt sends the model's JSON schema, takes the first JSON object in the reply
    (text after it is ignored) and validates it. A failed attempt is retried with the
    reply and the problem appended to the conversation. Invalid output never raises;
    `LLMError` from the backend does (callers fall back on either).
    """
    schema = model_type.model_json_schema()
    conversation = list(messages)
    for attempt in range(1, attempts + 1):
        text = await llm.generate(
            conversation, json_schema=schema, max_tokens=max_tokens, temperature=temperature
        )
        data = extract_json_object(text)
        if data is None:
            problem = "The reply did not contain a JSON object."
        else:
            try:
                return model_type.model_validate(data)
            except pydantic.ValidationError as exc:
                problem = "The JSON did not match the schema: " + "; ".join(
                    f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
                    for error in exc.errors()
                )
        log.info(
            "LLM output rejected",
            model=model_type.__name__,
            attempt=attempt,
            attempts=attempts,
            problem=problem,
        )
        conversation = [
            *conversation,
            Message("assistant", text),
            Message("user", f"{problem} Reply again with only a corrected JSON object."),
        ]
    return None
