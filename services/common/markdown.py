"""Generated sections inside hand-written markdown (docs/benchmarks.md).

A section sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`; a
benchmark rewrites its own section and leaves the rest of the page alone.
"""

from __future__ import annotations

from pathlib import Path

NEW_PAGE = "# Benchmarks\n\nNumbers measured on real machines; each section says how.\n\n"


def write_section(path: Path, name: str, text: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text}{end}\n"
    existing = path.read_text() if path.exists() else NEW_PAGE
    if start in existing and end in existing:
        before, rest = existing.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        updated = before + block + ("\n" + after if after else "")
    else:
        updated = existing.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated)
