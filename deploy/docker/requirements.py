"""Print what `pip install ".[EXTRA...]"` would install, minus asiarch itself, one per line.

The images install these in a layer of their own that depends only on pyproject.toml
(`pip install -r`), then the code with `pip install --no-deps --no-build-isolation .`, so
a code change rebuilds seconds of work instead of every dependency. Extras that name
other extras (`asiarch[llm]`) are followed; the build system's requirements are included
so the last step needs no network.

    python requirements.py pyproject.toml analyst > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    document = tomllib.loads(pyproject.read_text())
    project = document["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    self_reference = re.compile(rf"{re.escape(project['name'])}\[([^\]]+)\]")
    found = [*document["build-system"]["requires"], *project["dependencies"]]
    followed: set[str] = set()

    def follow(extra: str) -> None:
        if extra in followed:
            return
        if extra not in optional:
            raise SystemExit(f"requirements.py: {pyproject} has no extra {extra!r} (has {sorted(optional)})")
        followed.add(extra)
        for requirement in optional[extra]:
            nested = self_reference.fullmatch(requirement.strip())
            if nested:
                for name in nested.group(1).split(","):
                    follow(name.strip())
            else:
                found.append(requirement)

    for extra in extras:
        follow(extra)
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: requirements.py PYPROJECT [EXTRA...]")
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2:])))
