"""A fake TGI / OpenAI-compatible server for the LLM client tests (stdlib only, runs in a thread).

Implements the routes the clients use, validating requests the way TGI does:

* ``GET /health`` - 200 when healthy, 503 otherwise;
* ``GET /info`` - the model info, with ``max_input_tokens`` and ``max_total_tokens``;
* ``POST /generate`` - ``{"inputs": str, "parameters": {...}}`` -> ``{"generated_text": str}``;
  422 ``{"error", "error_type": "validation"}`` for a malformed request (empty inputs, ``max_new_tokens``
  < 1, ``temperature`` <= 0, more than 4 stop sequences, a bad ``grammar``, prompt + ``max_new_tokens`` >
  ``max_total_tokens``);
* ``POST /v1/chat/completions`` - the OpenAI chat shape, with the same validation for its fields.

Tests queue failures with `fail_next(status, message, error_type)` and set `reply` (a string or a
function of the request body). Every request received is recorded in `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHARS_PER_TOKEN = 4
MAX_STOP_SEQUENCES = 4
GRAMMAR_TYPES = ("json", "regex")
RESPONSE_FORMAT_TYPES = ("json", "regex", "json_object", "json_schema", "text")


class Invalid(Exception):
    pass


@dataclass
class Recorded:
    """One request; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeServerState:
    info: dict[str, Any] = field(
        default_factory=lambda: {
            "model_id": "fake/model",
            "max_input_tokens": 1000,
            "max_total_tokens": 1200,
            "max_stop_sequences": MAX_STOP_SEQUENCES,
        }
    )
    healthy: bool = True
    reply: str | Callable[[dict[str, Any]], str] = '{"ok": true}'
    requests: list[Recorded] = field(default_factory=list)
    failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, message: str, error_type: str, times: int = 1) -> None:
        with self.lock:
            self.failures.extend([(status, {"error": message, "error_type": error_type})] * times)

    def posts(self, path: str) -> list[Any]:
        return [
            request.body for request in self.requests if request.method == "POST" and request.path == path
        ]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Invalid(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_grammar(grammar: object, name: str) -> None:
    _require(isinstance(grammar, dict), f"`{name}` must be an object")
    assert isinstance(grammar, dict)
    _require(
        grammar.get("type") in GRAMMAR_TYPES, f"unknown variant `{grammar.get('type')}` in `{name}.type`"
    )
    _require("value" in grammar, f"missing field `value` in `{name}`")


def _validate_common(
    parameters: dict[str, Any], max_new_tokens: object, max_total: int, input_tokens: int
) -> None:
    temperature = parameters.get("temperature")
    if temperature is not None:
        _require(
            isinstance(temperature, int | float) and temperature > 0,
            "`temperature` must be strictly positive",
        )
    stop = parameters.get("stop")
    if stop is not None:
        _require(
            isinstance(stop, list) and all(isinstance(s, str) for s in stop),
            "`stop` must be a list of strings",
        )
        _require(
            len(stop) <= MAX_STOP_SEQUENCES, f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences"
        )
    if max_new_tokens is not None:
        _require(_is_int(max_new_tokens) and max_new_tokens > 0, "`max_new_tokens` must be strictly positive")
        assert isinstance(max_new_tokens, int)
        _require(
            input_tokens + max_new_tokens <= max_total,
            f"`inputs` tokens + `max_new_tokens` must be <= {max_total}. "
            f"Given: {input_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`",
        )


def _validate_generate(body: object, info: dict[str, Any]) -> None:
    _require(isinstance(body, dict), "request body must be a JSON object")
    assert isinstance(body, dict)
    inputs = body.get("inputs")
    _require(isinstance(inputs, str), "missing field `inputs`")
    assert isinstance(inputs, str)
    _require(inputs != "", "`inputs` cannot be empty")
    input_tokens = len(inputs) // CHARS_PER_TOKEN + 1
    _require(
        input_tokens <= info["max_input_tokens"],
        f"`inputs` must have less than {info['max_input_tokens']} tokens. Given: {input_tokens}",
    )
    parameters = body.get("parameters") or {}
    _require(isinstance(parameters, dict), "`parameters` must be an object")
    if parameters.get("grammar") is not None:
        _validate_grammar(parameters["grammar"], "grammar")
    _validate_common(parameters, parameters.get("max_new_tokens"), info["max_total_tokens"], input_tokens)


def _validate_chat(body: object, info: dict[str, Any]) -> None:
    _require(isinstance(body, dict), "request body must be a JSON object")
    assert isinstance(body, dict)
    messages = body.get("messages")
    _require(isinstance(messages, list) and len(messages) > 0, "missing field `messages`")
    assert isinstance(messages, list)
    for message in messages:
        _require(
            isinstance(message, dict)
            and message.get("role") in ("system", "user", "assistant")
            and isinstance(message.get("content"), str),
            "each message needs a `role` and a string `content`",
        )
    _require(isinstance(body.get("model"), str), "missing field `model`")
    response_format = body.get("response_format")
    if response_format is not None:
        _require(isinstance(response_format, dict), "`response_format` must be an object")
        kind = response_format.get("type")
        _require(kind in RESPONSE_FORMAT_TYPES, f"unknown variant `{kind}` in `response_format.type`")
        if kind in GRAMMAR_TYPES:
            _validate_grammar(response_format, "response_format")
    temperature = body.get("temperature")
    parameters = {"stop": body.get("stop")}
    _require(
        temperature is None or (isinstance(temperature, int | float) and temperature >= 0),
        "bad `temperature`",
    )
    input_tokens = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 1
    _validate_common(parameters, body.get("max_tokens"), info["max_total_tokens"], input_tokens)


ROUTES = {"/generate": _validate_generate, "/v1/chat/completions": _validate_chat}


def _chat_completion(model: str, text: str) -> dict[str, Any]:
    """An OpenAI chat completion whose one choice says `text`."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class _Server(ThreadingHTTPServer):
    """The HTTP server; its handlers answer from `state`."""

    def __init__(self, state: FakeServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self, body: Any) -> None:
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.server.state.requests.append(Recorded(self.command, self.path, headers, body))

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        self._record(None)
        if self.path == "/health":
            if state.healthy:
                self._send(200, {})
            else:
                self._send(503, {"error": "unhealthy", "error_type": "healthcheck"})
        elif self.path == "/info":
            self._send(200, state.info)
        else:
            self._send(404, {"error": "not found", "error_type": "not_found"})

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._record(raw)
            self._send(422, {"error": "Failed to deserialize the JSON body", "error_type": "validation"})
            return
        self._record(body)
        if self.path not in ROUTES:
            self._send(404, {"error": "not found", "error_type": "not_found"})
            return
        with state.lock:
            failure = state.failures.pop(0) if state.failures else None
        if failure is not None:
            self._send(*failure)
            return
        try:
            ROUTES[self.path](body, state.info)
        except Invalid as error:
            self._send(422, {"error": f"Input validation error: {error}", "error_type": "validation"})
            return
        text = state.reply(body) if callable(state.reply) else state.reply
        if self.path == "/generate":
            self._send(200, {"generated_text": text})
        else:
            self._send(200, _chat_completion(body["model"], text))


class FakeLLMServer:
    """Run the fake server on 127.0.0.1 with an ephemeral port; use as a context manager."""

    def __init__(self) -> None:
        self.state = FakeServerState()
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
