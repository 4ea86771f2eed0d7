"""The sandbox contains hostile code: every case ends as a clear failure, never a dead service.

These run candidate code straight in the sandbox, without the static checks
in front, so the containment itself is what is tested.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from layers import SANDBOX_BUDGET
from layers import layer as build_layer
from sandbox_processes import sandbox_processes

from asiarch.engineer import sandbox
from asiarch.engineer.sandbox import SandboxLimits, SandboxResult, run_in_sandbox

BUDGET = SANDBOX_BUDGET.to_json()  # the job's JSON form


def layer(init: str = "pass") -> str:
    """A plain layer whose constructor runs `init`: hostile code executes as soon as it is built."""
    return build_layer(init=init)


def run(source: str, **limits: Any) -> SandboxResult:
    job = {"kind": "check", "source": source, "class_name": "DeltaNet", "budget": BUDGET}
    settings = SandboxLimits(**{"wall_seconds": 60.0, **limits})
    return asyncio.run(run_in_sandbox(job, settings))


def test_a_plain_layer_passes_and_reports_enforcement() -> None:
    result = run(layer())
    assert result.outcome == "ok", result.error
    assert result.result is not None
    assert all(check["passed"] for check in result.result["checks"])
    assert {"network", "filesystem", "user", "rlimits", "tasks"} <= set(result.enforcement)


def test_infinite_loop_hits_the_wall_clock() -> None:
    started = time.monotonic()
    result = run(layer("while True:\n            pass"), wall_seconds=8)
    assert result.outcome == "timeout"
    assert "wall-clock limit of 8 s" in result.error
    assert time.monotonic() - started < 20


def test_memory_bomb_is_a_memory_error() -> None:
    result = run(layer("self.hog = [bytearray(1 << 28) for _ in range(64)]"), memory_bytes=2 << 30)
    assert result.outcome == "error"
    assert "MemoryError" in result.error


def test_memory_limit_zero_lifts_the_address_space_cap_and_says_so() -> None:
    # A CUDA engineer runs with ASIARCH_ENGINEER_SANDBOX_MEMORY_GB=0: the driver reserves more
    # virtual memory than any sane cap, so reserving 8 GiB of address space must then succeed.
    probe = "import mmap\n        self.reserved = mmap.mmap(-1, 8 << 30)"
    capped = run(layer(probe), memory_bytes=2 << 30)
    assert capped.outcome == "error", capped.error
    lifted = run(layer(probe), memory_bytes=0)
    assert lifted.outcome == "ok", lifted.error
    assert "no address-space limit" in lifted.enforcement["rlimits"]


def test_recursion_bomb() -> None:
    result = run(layer("def f(n):\n            return f(n + 1)\n        f(0)"))
    assert result.outcome == "error"
    assert "RecursionError" in result.error


def test_stdout_flood_is_stopped() -> None:
    result = run(layer("while True:\n            print('x' * 10000)"), output_bytes=1 << 20)
    assert result.outcome == "output_flood"
    assert "more than 1048576 bytes" in result.error


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/net"), reason="needs Linux network namespaces")
def test_network_is_unreachable() -> None:
    connect = "import socket\n        socket.create_connection(('1.1.1.1', 53), timeout=3)"
    result = run(layer(connect))
    if not result.enforcement["network"].startswith("isolated"):
        pytest.skip(f"network isolation not available here: {result.enforcement['network']}")
    assert result.outcome == "error"
    assert "OSError" in result.error or "unreachable" in result.error.lower()


def test_writing_outside_the_sandbox_directory_fails(tmp_path: Any) -> None:
    target = tmp_path / "escaped.txt"
    result = run(layer(f"open({str(target)!r}, 'w').write('pwned')"))
    if not result.enforcement["filesystem"].startswith("read-only"):
        pytest.skip(f"no read-only file system here: {result.enforcement['filesystem']}")
    assert result.outcome == "error"
    assert "Read-only file system" in result.error or "Permission denied" in result.error
    assert not target.exists()


def test_writing_inside_the_sandbox_directory_is_allowed_and_cleaned_up() -> None:
    result = run(layer("open('scratch.txt', 'w').write('ok')"))
    assert result.outcome == "ok", result.error


@pytest.fixture
def workdirs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sandbox folders this test made: they name its processes (other runs may share the machine)."""
    made: list[str] = []
    mkdtemp = sandbox.tempfile.mkdtemp

    def recording(**kwargs: Any) -> str:
        made.append(mkdtemp(**kwargs))
        return made[-1]

    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", recording)
    return made


def test_fork_bomb_is_contained(workdirs: list[str]) -> None:
    bomb = "import os\n        while True:\n            os.fork()"
    result = run(layer(bomb), max_processes=64, wall_seconds=20)
    if not result.enforcement.get("tasks", "").startswith("pids cgroup") and os.getuid() == 0:
        pytest.skip("no pids cgroup and root ignores RLIMIT_NPROC: refusing to fork-bomb this machine")
    assert result.outcome in {"error", "timeout", "crashed"}
    assert result.outcome != "ok"
    # Nothing of it survives.
    time.sleep(0.5)
    assert workdirs and not sandbox_processes(*workdirs)


def test_ctypes_segfault_is_reported_as_a_crash() -> None:
    crash = "import ctypes\n        ctypes.string_at(0)"
    result = run(layer(crash))
    assert result.outcome == "crashed"
    assert "segmentation fault" in result.error


def test_a_cancelled_run_leaves_no_process(workdirs: list[str]) -> None:
    async def cancel_midway() -> None:
        job = {"kind": "check", "source": layer("while True:\n            pass"), "class_name": "DeltaNet",
               "budget": BUDGET}  # fmt: skip
        task = asyncio.create_task(run_in_sandbox(job, SandboxLimits(wall_seconds=60)))
        await asyncio.sleep(3)
        assert len(sandbox_processes(*workdirs)) == 3  # the launcher, pid 1 of its namespace and the worker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    time.sleep(0.5)
    assert workdirs and not sandbox_processes(*workdirs)
