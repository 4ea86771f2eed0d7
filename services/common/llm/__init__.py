"""LLM access for the services: one async interface, several backends, structured output.

from asiarch.common.llm import LLMSettings, Message, create_llm, generate_model

llm = create_llm(LLMSettings())          # ASIARCH_LLM_BACKEND=none|local|tgi|openai
plan = await generate_model(llm, [Message("user", "...")], Plan)   # None -> deterministic fallback
"""

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
from asiarch.common.llm.factory import LLMSettings, create_llm
from asiarch.common.llm.local import LocalClient
from asiarch.common.llm.none import NoLLM
from asiarch.common.llm.openai_compat import OpenAICompatibleClient
from asiarch.common.llm.tgi import TGIClient, render_chatml

__all__ = [
    "LLM",
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
