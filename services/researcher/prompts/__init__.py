"""Versioned prompt templates (`<name>.v<N>.md`), loaded by name; edit a copy with a new version."""

from __future__ import annotations

from importlib import resources


def load(name: str, version: int = 1) -> str:
    return (resources.files(__package__) / f"{name}.v{version}.md").read_text()
