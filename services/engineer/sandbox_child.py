"""First code to run in a sandbox process: lock the process down, then run the worker.

Started by sandbox.py as `python -I -m asiarch.engineer.sandbox_child LIMITS_JSON FD`
in a fresh session (its own process group), with a scrubbed environment and a
fresh temporary directory as cwd. Everything here happens before any
candidate code is imported, which is why it is done in the child itself
rather than in a preexec_fn (unsafe in the threaded gRPC server).

Protocol: the job arrives as one JSON document on stdin; events go out as
JSON lines on the inherited pipe FD. stdout is pointed at stderr, so whatever the
candidate prints cannot corrupt the protocol.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import stat
import sys
import sysconfig

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
# Kernel file systems whose remount would fail or break the process; none is writable for files.
SKIP_MOUNTS = ("/proc", "/sys", "/dev")
NOBODY = 65534


def _set_limits(limits: dict[str, int]) -> None:
    pairs = {
        "cpu_seconds": resource.RLIMIT_CPU,
        "memory_bytes": resource.RLIMIT_AS,
        "file_size_bytes": resource.RLIMIT_FSIZE,
        "open_files": resource.RLIMIT_NOFILE,
        "max_processes": resource.RLIMIT_NPROC,
    }
    for name, which in pairs.items():
        value = int(limits[name])
        if name == "memory_bytes" and value <= 0:
            continue  # no address-space limit (CUDA); the container's memory limit applies
        resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _isolate_network() -> str:
    """A new, empty network namespace: only a down loopback, so no connection can leave."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return "isolated (empty network namespace)"
    return f"not isolated (unshare: {os.strerror(ctypes.get_errno())})"


def _read_only_filesystem(workdir: str) -> str:
    """A private mount namespace where everything but the sandbox directory is read-only."""
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(target: str, flags: int, source: str | None = None) -> bool:
        src = source.encode() if source else None
        return libc.mount(src, target.encode(), None, flags, None) == 0

    if libc.unshare(CLONE_NEWNS) != 0:
        return f"writable (unshare: {os.strerror(ctypes.get_errno())})"
    if not mount("/", MS_REC | MS_PRIVATE) or not mount(workdir, MS_BIND | MS_REC, source=workdir):
        return f"writable (mount: {os.strerror(ctypes.get_errno())})"
    with open("/proc/self/mountinfo") as handle:
        targets = [line.split()[4] for line in handle]
    failed = 0
    for target in sorted(set(targets), key=len):
        if target == workdir or (target.startswith(SKIP_MOUNTS) and target != "/dev/shm"):
            continue
        if not mount(target, MS_REMOUNT | MS_BIND | MS_RDONLY):
            failed += 1
    # The cwd still points into the mount underneath the new bind mount: re-enter it.
    os.chdir(workdir)
    suffix = f" ({failed} mount points could not be remounted)" if failed else ""
    return f"read-only except the sandbox directory{suffix}"


def _world_readable(path: str) -> bool:
    """Whether an unprivileged user can reach and read path (every parent searchable)."""
    current = os.path.realpath(path)
    while True:
        mode = os.stat(current).st_mode
        if not mode & (stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH):
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def _drop_privileges() -> str:
    # Root may write anywhere and is not bound by RLIMIT_NPROC: run as nobody,
    # when nobody can still read the interpreter and the installed packages.
    if os.getuid() != 0:
        return f"unprivileged (uid {os.getuid()})"
    needed = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], os.path.dirname(__file__)]
    unreadable = [p for p in needed if not _world_readable(p)]
    if unreadable:
        return f"still root: {unreadable[0]} is not readable by nobody"
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "dropped root to nobody"


def main() -> None:
    limits = json.loads(sys.argv[1])
    protocol = os.fdopen(int(sys.argv[2]), "w", buffering=1)
    os.dup2(2, 1)  # candidate prints go to stderr, never onto the protocol channel
    enforcement = {"network": _isolate_network() if limits.get("isolate_network") else "not requested"}
    enforcement["filesystem"] = _read_only_filesystem(os.getcwd())
    enforcement["user"] = _drop_privileges()
    _set_limits(limits)
    enforcement["rlimits"] = (
        "cpu, address space, file size, open files, processes"
        if int(limits["memory_bytes"]) > 0
        else "cpu, file size, open files, processes (no address-space limit)"
    )

    def emit(event: dict[str, object]) -> None:
        protocol.write(json.dumps(event) + "\n")

    emit({"type": "sandbox", "enforcement": enforcement})
    job = json.load(sys.stdin)
    from asiarch.engineer import worker

    try:
        result = worker.run(job, emit)
    except BaseException as exc:  # everything the candidate can do ends up here
        emit({"type": "error", "error": worker.describe_error(exc)})
        protocol.flush()
        os._exit(1)
    emit({"type": "result", "result": result})
    protocol.flush()
    # Skip interpreter shutdown: candidate objects with hostile __del__ never run.
    os._exit(0)


if __name__ == "__main__":
    main()
