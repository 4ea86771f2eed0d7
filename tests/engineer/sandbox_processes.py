"""The sandbox processes running on this machine, found by their command line.

For tests that check no sandbox outlives what started it: other runs may share the machine, so a test
names its own sandboxes by their folder (or by the engineer's pid, which every folder it makes carries).
"""

from __future__ import annotations

import os


def sandbox_processes(*marks: str) -> list[str]:
    """Pids of sandbox processes with an argument containing one of `marks` (a sandbox's folder, or
    WORKDIR_PREFIX followed by an engineer's pid and a dash)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                arguments = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue  # it ended while we looked
        if "asiarch.engineer.sandbox_child" in arguments and any(
            mark in argument for mark in marks for argument in arguments
        ):
            found.append(pid)
    return found
