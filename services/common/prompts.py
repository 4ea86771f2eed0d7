"""Versioned prompt templates shipped as package data (`<name>.v<N>.md`).

A prompt change gets a new version file rather than an edit, so a result can
always be traced back to the exact words that produced it.
"""

from __future__ import annotations

from importlib import resources


def load_prompt(package: str, name: str, version: int = 1) -> str:
    return (resources.files(package) / f"{name}.v{version}.md").read_text(encoding="utf-8")
