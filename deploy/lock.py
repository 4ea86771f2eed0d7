"""The dependency lock: `requirements.lock`, what every install path installs.

`make lock` resolves the whole dependency set of `pyproject.toml` (every extra) with
pip-compile, on Linux x86_64 / CPython 3.11, then `tidy` makes the result portable:

- the project's own line goes (`asiarch @ file:///<this checkout>`: extras that name
  other extras, `asiarch[llm]`, make pip-compile list the project itself), and so do the
  `# via asiarch` notes it leaves, so `# via asiarch (pyproject.toml)` marks exactly our
  direct requirements;
- a local version label goes (`torch==2.13.0+cpu` -> `torch==2.13.0`): pip resolved the
  CPU build found on this machine's disk; the same pin takes that build where it is
  (these machines, the CPU images' torch index) and PyPI's CUDA build elsewhere.

Every install path reads the lock as pip constraints (`pip install -c requirements.lock
...`), so an install of one extra (a service image) gets the same versions as the test
environment. `pins` and `direct_requirements` are what tests/contract/test_lock.py checks
against pyproject.toml.

    python -P deploy/lock.py tidy requirements.lock
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROJECT = "asiarch"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
VIA_PYPROJECT = f"{PROJECT} (pyproject.toml)"


def canonical(name: str) -> str:
    """PEP 503 normalised name: the form pip compares."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(text: str) -> list[list[str]]:
    """The lock split into entries: a requirement line and the comment lines under it."""
    entries: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and entries:
            entries[-1].append(line)
        else:
            entries.append([line])
    return entries


def tidy(text: str) -> str:
    kept: list[str] = []
    for entry in _entries(text):
        head = entry[0]
        if head.startswith(f"{PROJECT} @ "):
            continue
        head = re.sub(r"^(\S+==[^+\s]+)\+\S+", r"\1", head)
        comments = [line for line in entry[1:] if line.strip() not in (f"#   {PROJECT}", f"# via {PROJECT}")]
        kept += [head, *comments]
    return "\n".join(kept) + "\n"


def pins(text: str) -> dict[str, str]:
    """{canonical name: pinned version} of every requirement in the lock."""
    found = {}
    for entry in _entries(text):
        match = PIN.match(entry[0])
        if match:
            found[canonical(match["name"])] = match["version"]
    return found


def direct_requirements(text: str) -> set[str]:
    """Canonical names the lock says pyproject.toml asks for directly (`# via asiarch (pyproject.toml)`)."""
    direct = set()
    for entry in _entries(text):
        match = PIN.match(entry[0])
        if match and any(line.strip().endswith(VIA_PYPROJECT) for line in entry[1:]):
            direct.add(canonical(match["name"]))
    return direct


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "tidy":
        raise SystemExit("usage: lock.py tidy LOCKFILE")
    lock = Path(sys.argv[2])
    lock.write_text(tidy(lock.read_text()))
