"""Run candidate code in a locked-down child process and stream its events back.

What is enforced, and where:
- here: a separate process in its own session; a wall-clock timeout that kills
  the whole process group; a fresh temporary working directory, deleted
  afterwards; a scrubbed environment; output caps (a child that floods
  stdout/stderr or the event channel is killed); pids and memory cgroups around
  all its processes (cgroups.py); Triton's cache in that directory, read after
  the engineer's shared kernel cache, which the child cannot write (kernel_cache.py);
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
from asiarch.engineer.kernel_cache import overlay_env

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
    # The shared Triton kernel cache (kernel_cache.py): read before the child's own, never written by it.
    kernel_cache_dir: str | None = None


@dataclass
class SandboxResult:
    outcome: Outcome
    result: dict[str, Any] | None = None
    error: str = ""
    returncode: int | None = None
    wall_seconds: float = 0.0
    enforcement: dict[str, str] = field(default_factory=dict)
    stderr_tail: str = ""


def child_env(workdir: str, threads: int, kernel_cache_dir: str | None = None) -> dict[str, str]:
    """A sandbox child's whole environment; the engineer's kernel warm step (kernel_warm.py) runs in it too.

    Triton's cache is the folder's own `.triton` (deleted with it), read after `kernel_cache_dir`.
    """
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
        **overlay_env(kernel_cache_dir),
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


@dataclass
class _Report:
    """What the child said on its channels, and which channel it flooded (if any)."""

    flooded: asyncio.Event = field(default_factory=asyncio.Event)
    flood: str = ""
    enforcement: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str = ""
    refused: list[str] = field(default_factory=list)
    stderr: bytes = b""

    def flooding(self, channel: str) -> None:
        self.flood = channel
        self.flooded.set()


async def _read_events(
    reader: asyncio.StreamReader, limits: SandboxLimits, sink: EventSink | None, report: _Report
) -> None:
    received = 0
    while line := await reader.readline():
        received += len(line)
        if received > limits.output_bytes:
            report.flooding("event channel")
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a candidate that wrote onto fd 3 gains nothing
        kind = event.get("type")
        if kind == "sandbox":
            report.enforcement = event.get("enforcement", {})
        elif kind == "result":
            report.result = event.get("result")
        elif kind == "error":
            report.error = str(event.get("error", ""))
        elif kind == "refused":
            report.refused = [str(layer) for layer in event.get("missing", [])]
        elif sink is not None:
            await sink(event)


async def _read_stderr(reader: asyncio.StreamReader, limits: SandboxLimits, report: _Report) -> None:
    received = 0
    while chunk := await reader.read(65536):
        received += len(chunk)
        report.stderr = (report.stderr + chunk)[-STDERR_TAIL_BYTES:]
        if received > limits.output_bytes:
            report.flooding("stdout/stderr")
            return


async def _pipe_reader(fd: int, limit: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


class _Pipes:
    """The child's two output channels (events, stderr), each end closed exactly once.

    Our own pipes, not asyncio's subprocess pipes: on Python 3.11, wait() does not return while a
    subprocess pipe is unread, and a flooding child is exactly the case where we stop reading.
    """

    def __init__(self) -> None:
        self.events_read, self.events_write = os.pipe()
        self.stderr_read, self.stderr_write = os.pipe()
        self.transports: list[asyncio.BaseTransport] = []

    def child_has_write_ends(self) -> None:
        for fd in (self.events_write, self.stderr_write):
            os.close(fd)
        self.events_write = self.stderr_write = -1

    async def readers(self, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamReader]:
        """Readers of both channels; their transports own the read ends from here on."""
        events, transport = await _pipe_reader(self.events_read, limit)
        self.events_read = -1
        self.transports.append(transport)
        stderr, transport = await _pipe_reader(self.stderr_read, limit)
        self.stderr_read = -1
        self.transports.append(transport)
        return events, stderr

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        for fd in (self.events_read, self.events_write, self.stderr_read, self.stderr_write):
            if fd >= 0:
                os.close(fd)
        self.events_read = self.events_write = self.stderr_read = self.stderr_write = -1


def _workdir() -> str:
    """A fresh folder for the child, named after this engineer: remove_leftovers finds it if we are killed."""
    workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
    if os.getuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    return workdir


async def _start_child(limits: SandboxLimits, workdir: str, pipes: _Pipes) -> asyncio.subprocess.Process:
    # As root the child sees only the paths it is told to read (isolation.reveal_python_tree).
    readable = (*limits.readable_paths, *([limits.kernel_cache_dir] if limits.kernel_cache_dir else []))
    child_limits = {**asdict(limits), "wall_seconds": int(limits.wall_seconds), "readable_paths": readable}
    process = await asyncio.create_subprocess_exec(
        *python_command("-m", "asiarch.engineer.sandbox_child", isolated=True),
        json.dumps(child_limits),
        str(pipes.events_write),
        workdir,  # also names the sandbox in `ps`
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=pipes.stderr_write,
        cwd=workdir,
        env=child_env(workdir, limits.threads, limits.kernel_cache_dir),
        start_new_session=True,
        pass_fds=(pipes.events_write,),
    )
    pipes.child_has_write_ends()
    return process


async def _send_job(process: asyncio.subprocess.Process, job: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(job).encode())
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await process.stdin.drain()
    process.stdin.close()


async def _watch(
    process: asyncio.subprocess.Process,
    channels: tuple[asyncio.StreamReader, asyncio.StreamReader],
    limits: SandboxLimits,
    on_event: EventSink | None,
    report: _Report,
) -> Outcome | None:
    """Read both channels until the child closes them; a flood or the wall clock kills it first."""
    events, stderr = channels
    readers = [
        asyncio.create_task(_read_events(events, limits, on_event, report)),
        asyncio.create_task(_read_stderr(stderr, limits, report)),
    ]
    finished = asyncio.create_task(asyncio.wait(readers))
    flood = asyncio.create_task(report.flooded.wait())
    waiting = {finished, flood}
    done, _ = await asyncio.wait(waiting, timeout=limits.wall_seconds, return_when="FIRST_COMPLETED")
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
    return outcome


async def run_in_sandbox(
    job: dict[str, Any], limits: SandboxLimits, on_event: EventSink | None = None
) -> SandboxResult:
    """Run worker.run(job) in a sandbox; forward its progress events to on_event."""
    started = time.monotonic()
    cgroups = SandboxCgroups(limits.max_processes, limits.memory_bytes)
    if missing := _missing_cgroups(cgroups, limits):
        cgroups.remove()
        return _refused(missing, _cgroup_enforcement(cgroups))
    workdir = _workdir()
    pipes = _Pipes()
    report = _Report()
    process: asyncio.subprocess.Process | None = None
    try:
        process = await _start_child(limits, workdir, pipes)
        # The child runs no candidate code before it reads the job, so joining
        # the cgroup here, before the job is written, leaves no window.
        cgroups.add(process.pid)
        channels = await pipes.readers(limits.output_bytes + 1)
        await _send_job(process, job)
        outcome = await _watch(process, channels, limits, on_event, report)
        pipes.close()
        returncode = await process.wait()
    finally:  # cancelled (the call was) or not: nothing of the child outlives this
        if process is not None:
            _kill_group(process)  # anything the child left behind in its group
        cgroups.remove()
        pipes.close()
        shutil.rmtree(workdir, ignore_errors=True)
    enforcement = {**report.enforcement, **_cgroup_enforcement(cgroups)}
    return _result(outcome, report, returncode, limits, enforcement, time.monotonic() - started)


def _result(
    outcome: Outcome | None,
    report: _Report,
    returncode: int,
    limits: SandboxLimits,
    enforcement: dict[str, str],
    wall_seconds: float,
) -> SandboxResult:
    """The outcome, in order of precedence: timeout, refused, flood, the candidate's error, no result."""
    stderr_tail = report.stderr.decode(errors="replace")
    result = SandboxResult(
        outcome="ok",
        result=report.result,
        returncode=returncode,
        wall_seconds=wall_seconds,
        enforcement=enforcement,
        stderr_tail=stderr_tail,
    )
    if outcome == "timeout":
        result.outcome, result.error = "timeout", f"wall-clock limit of {limits.wall_seconds:g} s exceeded"
    elif report.refused:
        return _refused(report.refused, result.enforcement)
    elif outcome == "output_flood":
        result.outcome = "output_flood"
        result.error = f"more than {limits.output_bytes} bytes written to {report.flood}"
    elif report.error:
        result.outcome, result.error = "error", report.error
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
