"""LLM access for the services: one async interface, several backends, structured output.

from asiarch.common.llm import LLMSettings, Message, create_llm, generate_model

llm = create_llm(settings)     # settings: LLMSettings, or a service's settings, which inherit it
await llm.start()
plan = await generate_model(llm, [Message("user", "...")], Plan)   # None -> deterministic fallback
await llm.close()

The HTTP and local backends (huggingface_hub, transformers) load on first use of their names.
"""

from typing import Any

from asiarch.common.llm.base import (
    LLM,
    LLMError,
    LLMGenerationFailed,
    LLMRequestRejected,
    LLMUnavailable,
    Message,
    extract_json_object,
    generate_model,
)
from asiarch.common.llm.factory import Backend, LLMSettings, create_llm
from asiarch.common.llm.none import NoLLM

_LAZY = {
    "LocalClient": "asiarch.common.llm.local",
    "OpenAICompatibleClient": "asiarch.common.llm.openai_compat",
    "TGIClient": "asiarch.common.llm.tgi",
    "render_chatml": "asiarch.common.llm.tgi",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LLM",
    "Backend",
    "LLMError",
    "LLMGenerationFailed",
    "LLMRequestRejected",
    "LLMSettings",
    "LLMUnavailable",
    "LocalClient",
    "Message",
    "NoLLM",
    "OpenAICompatibleClient",
    "TGIClient",
    "create_llm",
    "extract_json_object",
    "generate_model",
    "render_chatml",
]
