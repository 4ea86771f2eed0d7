"""A command stopped from outside stops what it started.

SIGTERM (kill, `docker stop`, a CI timeout) stops a command as Ctrl-C does, so the local services it started
are stopped with it; and a local service dies with the process that started it even when that process is
killed without warning (SIGKILL, the OOM killer): nothing is left running behind a command.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from support import BIN

from asiarch.orchestrator.bench.runs import descendants

# Busy forever when the engineer builds it: the command is still waiting on its local engineer when signalled.
ENDLESS_LAYER = """
import torch.nn as nn


class DeltaNet(nn.Module):
    def __init__(self, d_model: int = 64, num_heads: int = 4, **kwargs):
        super().__init__()
        while True:
            pass

    def forward(self, x, **kwargs):
        return x
"""


def _validating(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """`asiarch validate` of the endless layer, once its local engineer runs the candidate's sandbox; the
    processes the command started."""
    layer = tmp_path / "endless.py"
    layer.write_text(ENDLESS_LAYER)
    command = subprocess.Popen(
        [str(BIN / "asiarch"), "validate", str(layer)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 100
    while not any("sandbox_child" in _cmdline(p) for p in descendants(command.pid)):
        assert command.poll() is None, f"validate ended (exit {command.returncode}) before its sandbox ran"
        assert time.monotonic() < deadline, "no sandbox started within 100 s"
        time.sleep(0.2)
    return command, descendants(command.pid)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _gone(pids: list[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_sigterm_stops_a_command_and_the_local_services_it_started(tmp_path: Path) -> None:
    command, started = _validating(tmp_path)
    command.send_signal(signal.SIGTERM)
    assert command.wait(timeout=60) == 130  # as after Ctrl-C
    assert _gone(started, within=30) == []


def test_a_local_service_dies_with_a_command_killed_without_warning(tmp_path: Path) -> None:
    command, started = _validating(tmp_path)
    command.kill()
    command.wait(timeout=10)
    assert _gone(started, within=60) == []
