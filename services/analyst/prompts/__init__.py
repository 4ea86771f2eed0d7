"""The analyst's prompt templates (`<name>.v<N>.md`)."""

from __future__ import annotations

from asiarch.common.prompts import load_prompt


def load(name: str, version: int = 1) -> str:
    return load_prompt(__package__, name, version)
