"""First code to run in a sandbox process: lock the process down, then run the worker.

Started by sandbox.py as `python -I -m asiarch.engineer.sandbox_child LIMITS_JSON FD WORKDIR`
in a fresh session (its own process group), inside the sandbox's cgroups, with a
scrubbed environment and a fresh temporary directory (WORKDIR) as cwd. Everything here
happens before any candidate code is imported, which is why it is done in the
child itself rather than in a preexec_fn (unsafe in the threaded gRPC server).

Three processes, all this program (isolation.py has the layers and their order):
- the launcher, started by the engineer: as root it hides the host behind a private
  mount namespace and becomes `nobody`; then it enters new user, mount, pid and network
  namespaces and forks;
- pid 1 of the new pid namespace: mounts its own /proc, makes every mount but the
  sandbox directory read-only, forks the worker and reaps; as pid 1 it cannot be killed
  from inside, and when it dies the kernel kills everything in the namespace;
- the worker: drops every capability, sets no_new_privs, loads the seccomp filter and
  the rlimits, reports what was enforced, reads the job and runs it.
Each of the first two exits as its child did (the same code or the same signal), so
the engineer sees the worker's fate. If a required layer cannot be set up, the worker
reports `refused` naming it and runs nothing, unless the limits allow running
unisolated (ASIARCH_ENGINEER_SANDBOX_UNSAFE, an explicit operator choice).

Protocol: the job arrives as one JSON document on stdin; events go out as
JSON lines on the inherited pipe FD. stdout is pointed at stderr, so whatever the
candidate prints cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

from asiarch.engineer import isolation

RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_AS,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "max_processes": resource.RLIMIT_NPROC,
}


def _set_limits(limits: dict[str, Any]) -> str:
    for name, which in RLIMITS.items():
        value = int(limits[name])
        if name == "memory_bytes" and value <= 0:
            continue  # no address-space limit (CUDA); the memory cgroup or the container's limit applies
        resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if int(limits["memory_bytes"]) > 0:
        return "cpu, address space, file size, open files, processes"
    return "cpu, file size, open files, processes (no address-space limit)"


def _needed_paths(limits: dict[str, Any]) -> list[str]:
    """What the worker reads: the interpreter, the installed packages, our code, the corpus."""
    paths = set(sysconfig.get_paths().values()) | {sys.prefix, sys.base_prefix, os.path.dirname(__file__)}
    paths |= {p for p in sys.path if p} | set(limits.get("readable_paths", ()))
    return sorted(paths)


def _wait_and_exit_alike(child: int) -> None:
    """Reap until `child` ends (pid 1 adopts orphans), then end the same way it did."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            break
    code = os.waitstatus_to_exitcode(status)
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum and os.getpid() != 1:  # pid 1 of a namespace cannot signal itself: it passes 128 + signal on
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(128 + signum if signum else code)


def _fork() -> None:
    """Continue in a new child; this process only waits for it."""
    child = os.fork()
    if child:
        _wait_and_exit_alike(child)


class Lockdown:
    """Sets up each layer, recording what it enforced and which required layers failed."""

    def __init__(self) -> None:
        self.enforcement: dict[str, str] = {}
        self.missing: list[str] = []

    def layer(self, key: str, step: Callable[..., str], *args: Any) -> bool:
        try:
            self.enforcement[key] = step(*args)
            return True
        except (isolation.IsolationError, OSError) as exc:
            self.enforcement[key] = f"not enforced ({exc})"
            self.missing.append(str(exc))
            return False

    def run(self, limits: dict[str, Any], workdir: str) -> None:
        """Returns in the worker process (or, when namespaces fail, in this one)."""
        network = bool(limits.get("isolate_network"))
        if os.getuid() == 0:
            self.layer("host view", isolation.reveal_python_tree, _needed_paths(limits))
            self.layer("user", isolation.drop_to_unprivileged)
        else:
            self.enforcement["user"] = f"unprivileged (uid {os.getuid()})"
        if self.layer("namespaces", isolation.enter_namespaces, network):
            _fork()  # pid 1 of the new namespace
            self.layer("proc", isolation.mount_own_proc)
            self.layer("filesystem", isolation.read_only_except, workdir)
            _fork()  # the worker
            self.enforcement["network"] = "isolated (empty network namespace)" if network else "not requested"
        else:
            self.enforcement["network"] = "not isolated" if network else "not requested"
        self.layer("capabilities", isolation.drop_capabilities)
        self.layer("no_new_privs", isolation.no_new_privileges)
        self.layer("seccomp", isolation.install_seccomp)
        self.enforcement["rlimits"] = _set_limits(limits)


def main() -> None:
    limits = json.loads(sys.argv[1])
    protocol = os.fdopen(int(sys.argv[2]), "w", buffering=1)
    os.dup2(2, 1)  # candidate prints go to stderr, never onto the protocol channel

    def emit(event: dict[str, object]) -> None:
        protocol.write(json.dumps(event) + "\n")

    lockdown = Lockdown()
    lockdown.run(limits, sys.argv[3])
    emit({"type": "sandbox", "enforcement": lockdown.enforcement})
    if lockdown.missing and not limits.get("allow_unisolated"):
        emit({"type": "refused", "missing": lockdown.missing})
        protocol.flush()
        os._exit(1)
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
