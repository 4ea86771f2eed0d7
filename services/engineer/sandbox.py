"""Run candidate code in a locked-down child process and stream its events back.

What is enforced, and where:
- here: a separate process in its own session; a wall-clock timeout that kills
  the whole process group; a fresh temporary working directory, deleted
  afterwards; a scrubbed environment; output caps (a child that floods
  stdout/stderr or the event channel is killed); pids and memory cgroups around
  all its processes (cgroups.py);
- in the child (sandbox_child.py, isolation.py), whoever runs the engineer: an
  unprivileged user on the host (root drops to `nobody`), its own user, pid,
  mount and network namespaces, its own /proc, a read-only file system but for
  the sandbox directory, no capabilities, no_new_privs, a seccomp filter, and
  rlimits on CPU seconds, address space, file size, open files and processes.
A layer that cannot be set up refuses the evaluation (outcome `refused`, naming
it) unless `allow_unisolated` is set — an explicit operator choice. As root, the
cgroups are required too; unprivileged, the container's own limits stand in for
them. What was enforced is reported in every result (`enforcement`).
The service process never imports candidate code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from asiarch.common.local import python_command
from asiarch.engineer.cgroups import SandboxCgroups
from asiarch.engineer.cgroups import remove_stale as remove_stale_cgroups

NOBODY = 65534
# Followed by the engineer's pid: what a killed engineer left is found at the next start.
WORKDIR_PREFIX = "asiarch-sandbox-"
STDERR_TAIL_BYTES = 16 * 1024

Outcome = Literal["ok", "error", "timeout", "output_flood", "crashed", "refused"]
EventSink = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 300.0
    cpu_seconds: int = 900
    memory_bytes: int = 6 << 30
    file_size_bytes: int = 64 << 20
    open_files: int = 512
    # RLIMIT_NPROC counts threads, per user: generous enough for torch's
    # thread pools in several concurrent sandboxes, far below a fork bomb's needs.
    max_processes: int = 512
    output_bytes: int = 4 << 20
    isolate_network: bool = True
    threads: int = 2
    # Run even when a layer of isolation cannot be set up (ASIARCH_ENGINEER_SANDBOX_UNSAFE).
    allow_unisolated: bool = False
    # Folders the candidate's process must read besides the interpreter (the corpus).
    readable_paths: tuple[str, ...] = ()


@dataclass
class SandboxResult:
    outcome: Outcome
    result: dict[str, Any] | None = None
    error: str = ""
    returncode: int | None = None
    wall_seconds: float = 0.0
    enforcement: dict[str, str] = field(default_factory=dict)
    stderr_tail: str = ""


def _child_env(workdir: str, threads: int) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        # `import fla` is always our shim here, even over a real FLA on a GPU: candidates run on the
        # kernels the engineer tests and benchmarks, in fp32 and on CPU tensors as well (FLA refuses both).
        "ASIARCH_FLA_COMPAT": "shim",
        "TRITON_CACHE_DIR": os.path.join(workdir, ".triton"),
    }
    # Pass through only what selects hardware or the kernel backend, never secrets.
    for name in ("CUDA_VISIBLE_DEVICES", "TRITON_INTERPRET", "ASIARCH_KERNEL_BACKEND"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def remove_leftovers() -> int:
    """Delete the folders and cgroups of sandboxes whose engineer was killed; returns how many."""
    removed = remove_stale_cgroups()
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        owner = folder.name.removeprefix(WORKDIR_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _read_events(
    reader: asyncio.StreamReader, limits: SandboxLimits, sink: EventSink | None, state: dict[str, Any]
) -> None:
    received = 0
    while line := await reader.readline():
        received += len(line)
        if received > limits.output_bytes:
            state["flood"] = "event channel"
            state["flooded"].set()
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a candidate that wrote onto fd 3 gains nothing
        kind = event.get("type")
        if kind == "sandbox":
            state["enforcement"] = event.get("enforcement", {})
        elif kind == "result":
            state["result"] = event.get("result")
        elif kind == "error":
            state["error"] = str(event.get("error", ""))
        elif kind == "refused":
            state["refused"] = [str(layer) for layer in event.get("missing", [])]
        elif sink is not None:
            await sink(event)


async def _read_stderr(reader: asyncio.StreamReader, limits: SandboxLimits, state: dict[str, Any]) -> None:
    tail = b""
    received = 0
    while chunk := await reader.read(65536):
        received += len(chunk)
        tail = (tail + chunk)[-STDERR_TAIL_BYTES:]
        state["stderr"] = tail
        if received > limits.output_bytes:
            state["flood"] = "stdout/stderr"
            state["flooded"].set()
            return


async def _pipe_reader(fd: int, limit: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def run_in_sandbox(
    job: dict[str, Any], limits: SandboxLimits, on_event: EventSink | None = None
) -> SandboxResult:
    """Run worker.run(job) in a sandbox; forward its progress events to on_event."""
    started = time.monotonic()
    cgroups = SandboxCgroups(limits.max_processes, limits.memory_bytes)
    if missing := _missing_cgroups(cgroups, limits):
        cgroups.remove()
        return _refused(missing, _cgroup_enforcement(cgroups))
    workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
    if os.getuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    # Both output channels are our own pipes, not asyncio's subprocess pipes:
    # on Python 3.11, wait() does not return while a subprocess pipe is unread,
    # and a flooding child is exactly the case where we stop reading.
    events_read, events_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    child_limits = {**asdict(limits), "wall_seconds": int(limits.wall_seconds)}
    state: dict[str, Any] = {"flooded": asyncio.Event()}
    process: asyncio.subprocess.Process | None = None
    transports: list[asyncio.BaseTransport] = []
    try:
        process = await asyncio.create_subprocess_exec(
            *python_command("-m", "asiarch.engineer.sandbox_child", isolated=True),
            json.dumps(child_limits),
            str(events_write),
            workdir,  # also names the sandbox in `ps`
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr_write,
            cwd=workdir,
            env=_child_env(workdir, limits.threads),
            start_new_session=True,
            pass_fds=(events_write,),
        )
        for fd in (events_write, stderr_write):
            os.close(fd)
        events_write = stderr_write = -1
        # The child runs no candidate code before it reads the job, so joining
        # the cgroup here, before the job is written, leaves no window.
        cgroups.add(process.pid)
        events, events_transport = await _pipe_reader(events_read, limits.output_bytes + 1)
        stderr, stderr_transport = await _pipe_reader(stderr_read, limits.output_bytes + 1)
        events_read = stderr_read = -1
        transports += [events_transport, stderr_transport]
        assert process.stdin is not None
        process.stdin.write(json.dumps(job).encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await process.stdin.drain()
        process.stdin.close()

        readers = [
            asyncio.create_task(_read_events(events, limits, on_event, state)),
            asyncio.create_task(_read_stderr(stderr, limits, state)),
        ]
        finished = asyncio.create_task(asyncio.wait(readers))
        flood = asyncio.create_task(state["flooded"].wait())
        done, _ = await asyncio.wait(
            {finished, flood}, timeout=limits.wall_seconds, return_when="FIRST_COMPLETED"
        )
        outcome: Outcome | None = None
        if flood in done:
            outcome = "output_flood"
        elif finished not in done:
            outcome = "timeout"
        if outcome is not None:
            _kill_group(process)
        for task in (*readers, finished, flood):
            task.cancel()
        await asyncio.gather(*readers, finished, flood, return_exceptions=True)
        for transport in transports:
            transport.close()
        returncode = await process.wait()
    except asyncio.CancelledError:
        if process is not None:
            _kill_group(process)
        raise
    finally:
        if process is not None:
            _kill_group(process)  # anything the child left behind in its group
        cgroups.remove()
        for transport in transports:
            transport.close()
        for fd in (events_read, events_write, stderr_read, stderr_write):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)

    stderr_tail = state.get("stderr", b"").decode(errors="replace")
    result = SandboxResult(
        outcome="ok",
        result=state.get("result"),
        returncode=returncode,
        wall_seconds=time.monotonic() - started,
        enforcement={**state.get("enforcement", {}), **_cgroup_enforcement(cgroups)},
        stderr_tail=stderr_tail,
    )
    if outcome == "timeout":
        result.outcome, result.error = "timeout", f"wall-clock limit of {limits.wall_seconds:g} s exceeded"
    elif state.get("refused"):
        return _refused(state["refused"], result.enforcement)
    elif outcome == "output_flood":
        result.outcome = "output_flood"
        result.error = f"more than {limits.output_bytes} bytes written to {state['flood']}"
    elif state.get("error"):
        result.outcome, result.error = "error", state["error"]
    elif result.result is None:
        result.outcome = "crashed"
        result.error = _describe_exit(returncode, stderr_tail)
    return result


def _missing_cgroups(cgroups: SandboxCgroups, limits: SandboxLimits) -> list[str]:
    """As root, RLIMIT_NPROC binds nothing and RLIMIT_AS is per process: the cgroups are required."""
    if os.getuid() != 0 or limits.allow_unisolated:
        return []
    return [
        f"{name} cgroup: {status}"
        for name, status in cgroups.status.items()
        if not cgroups.available(name) and status != "not requested"
    ]


def _cgroup_enforcement(cgroups: SandboxCgroups) -> dict[str, str]:
    return {"tasks": cgroups.status["pids"], "memory": cgroups.status["memory"]}


def _refused(missing: list[str], enforcement: dict[str, str]) -> SandboxResult:
    return SandboxResult(
        outcome="refused",
        error=(
            "the sandbox could not isolate candidate code, so nothing was run; missing: "
            + "; ".join(missing)
            + ". Give the engineer what it needs (docs/deploy.md, 'The sandbox') or, knowingly, set "
            "ASIARCH_ENGINEER_SANDBOX_UNSAFE=true"
        ),
        enforcement=enforcement,
    )


def _describe_exit(returncode: int | None, stderr_tail: str) -> str:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        why = {
            "SIGKILL": "killed (memory or process limit, or the OOM killer)",
            "SIGXCPU": "CPU-time limit exceeded",
            "SIGXFSZ": "file-size limit exceeded",
            "SIGSEGV": "segmentation fault",
        }.get(name, f"terminated by {name}")
        return f"sandbox process {why}"
    last = stderr_tail.strip().splitlines()[-1:] or ["no output"]
    return f"sandbox process exited with code {returncode} before reporting a result: {last[0]}"
