"""The cgroups around one sandbox: a cap on its tasks and on its memory, across all its processes.

RLIMIT_NPROC is per user and RLIMIT_AS per process: a fork bomb as root, or three
children each under the address-space cap, pass both. A cgroup counts every process
the sandbox starts, whatever its user. Created under the engineer's own cgroup (so a
container's limits still hold above it) when this process may create cgroups: root
with cgroup v1's `pids` and `memory` hierarchies, or a delegated cgroup v2 subtree.
Otherwise `status` says which was not available, and the sandbox decides whether that
refuses the evaluation.

Names carry the engineer's pid, so `remove_stale` can delete what a killed engineer left.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import ClassVar

ROOT = Path("/sys/fs/cgroup")
PREFIX = "asiarch-sandbox-"


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup directory for `controller` (v1), or its unified (v2) directory."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") and (ROOT / controller).is_dir():
            return ROOT / controller / path.lstrip("/")
    unified = [path for _, controllers, path in (line.split(":", 2) for line in lines) if controllers == ""]
    if unified and (ROOT / "cgroup.controllers").exists():
        return ROOT / unified[0].lstrip("/")
    return None


class SandboxCgroups:
    """One cgroup per controller (v1) or one for both (v2); `add` puts a process in all of them."""

    # (cgroup v1 file, cgroup v2 file) that sets each controller's limit
    LIMIT_FILES: ClassVar[dict[str, tuple[str, str]]] = {
        "pids": ("pids.max", "pids.max"),
        "memory": ("memory.limit_in_bytes", "memory.max"),
    }

    def __init__(self, max_tasks: int, memory_bytes: int) -> None:
        self.paths: dict[str, Path] = {}
        self.status: dict[str, str] = {}
        name = f"{PREFIX}{os.getpid()}-{id(self)}"
        for controller, limit in (("pids", max_tasks), ("memory", memory_bytes)):
            self.status[controller] = self._create(controller, name, limit) if limit > 0 else "not requested"

    def _create(self, controller: str, name: str, limit: int) -> str:
        parent = _own_cgroup(controller)
        if parent is None:
            return "not available (no cgroup file system for it)"
        path = parent / name
        try:
            path.mkdir(exist_ok=True)
            v1_file, v2_file = self.LIMIT_FILES[controller]
            (path / v1_file if (path / v1_file).exists() else path / v2_file).write_text(str(limit))
        except OSError as exc:
            if path not in self.paths.values():
                with contextlib.suppress(OSError):
                    path.rmdir()
            return f"not available ({exc.strerror})"
        self.paths[controller] = path
        if controller == "pids":
            return f"pids cgroup, at most {limit} tasks"
        return f"memory cgroup, at most {limit / (1 << 30):.3g} GiB for all its processes"

    def available(self, controller: str) -> bool:
        return controller in self.paths

    def add(self, pid: int) -> None:
        for controller, path in list(self.paths.items()):
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                self.status[controller] = f"not applied ({exc.strerror})"
                _empty_and_delete(path)
                del self.paths[controller]

    def remove(self) -> None:
        """Kill every task left in the cgroups (even ones that left the process group), then delete them."""
        for path in set(self.paths.values()):
            _empty_and_delete(path)
        self.paths = {}


def _empty_and_delete(path: Path) -> None:
    procs = path / "cgroup.procs"
    for _ in range(50):
        try:
            pids = [int(line) for line in procs.read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        path.rmdir()


def remove_stale() -> int:
    """Delete sandbox cgroups whose engineer is gone (killed before it could clean up); returns how many."""
    removed = 0
    for controller in ("pids", "memory", ""):
        parent = _own_cgroup(controller) if controller else None
        for root in {p for p in (parent, ROOT / controller if controller else None) if p and p.is_dir()}:
            for path in root.glob(f"{PREFIX}*"):
                match = re.match(rf"{PREFIX}(\d+)-", path.name)
                if match and not Path(f"/proc/{match.group(1)}").exists():
                    _empty_and_delete(path)
                    removed += not path.exists()
    return removed
