"""The hostile suite: each attack that once escaped the sandbox of an engineer run as root, tried again.

Found 2026-12-04 against an engineer running as root (as CI and a default container run it):
the child read /etc/shadow, joined the engineer's network namespace and reached another
service's port, wrote onto the host through /proc/<pid>/root, killed the engineer, and three
children together took 3.5 GiB under a 2 GiB limit. Each test runs the attack as candidate
code, straight in the sandbox (no static checks in front), and checks the host, not just the
reported outcome. The attack code reports what it managed as one JSON line (`REPORT {...}`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from layers import SANDBOX_BUDGET, layer

from asiarch.engineer import cgroups, sandbox
from asiarch.engineer.sandbox import SandboxLimits, SandboxResult, run_in_sandbox

BUDGET = SANDBOX_BUDGET.to_json()  # the job's JSON form
ROOT = os.getuid() == 0
linux_only = pytest.mark.skipif(not Path("/proc/self/ns/user").exists(), reason="needs Linux namespaces")


def attack(code: str, **limits: Any) -> tuple[SandboxResult, dict[str, Any]]:
    """Run `code` (a function body that fills `report`) as a layer's constructor."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    prelude = f"import json\n\n\ndef _attack(report):\n{body}\n\n\n"
    init = "report = {}\n        _attack(report)\n        raise RuntimeError('REPORT ' + json.dumps(report))"
    job = {
        "kind": "check",
        "source": layer(init=init, prelude=prelude),
        "class_name": "DeltaNet",
        "budget": BUDGET,
    }
    result = asyncio.run(run_in_sandbox(job, SandboxLimits(**{"wall_seconds": 60.0, **limits})))
    assert result.outcome == "error", (result.outcome, result.error, result.stderr_tail[-2000:])
    assert "REPORT " in result.error, result.error
    return result, json.loads(result.error.split("REPORT ", 1)[1])


def test_every_layer_is_enforced_whoever_runs_the_engineer() -> None:
    result, report = attack(
        """
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        for key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"):
            report[key] = status[key].strip()
        report["host uid"] = open("/proc/self/uid_map").read().split()[1]
        """
    )
    assert report["CapEff"] == report["CapPrm"] == report["CapBnd"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1" and report["Seccomp"] == "2"
    assert report["host uid"] != "0", "the sandbox's user maps to root on the host"
    for layer_name in ("namespaces", "proc", "filesystem", "capabilities", "no_new_privs", "seccomp"):
        assert not result.enforcement[layer_name].startswith("not enforced"), result.enforcement
    if ROOT:
        assert result.enforcement["memory"].startswith("memory cgroup"), result.enforcement
        assert result.enforcement["tasks"].startswith("pids cgroup"), result.enforcement


@pytest.mark.skipif(not Path("/etc/shadow").exists(), reason="no /etc/shadow here")
def test_an_aliased_torch_cannot_read_the_host_secrets() -> None:
    # `T = torch; T.from_file(...)` slipped past the static checks; as root the child then read the file.
    _, report = attack(
        """
        import torch
        T = torch
        for path in ("/etc/shadow", "/root/.bash_history", "/proc/1/environ"):
            try:
                report[path] = "READ %d bytes" % T.from_file(path, size=1, dtype=T.uint8).numel()
            except Exception as exc:
                report[path] = type(exc).__name__
            try:
                report[path + " open"] = "READ %d bytes" % len(open(path, "rb").read())
            except Exception as exc:
                report[path + " open"] = type(exc).__name__
        """
    )
    assert not [what for what, outcome in report.items() if outcome.startswith("READ")], report


def test_no_way_into_the_engineers_network() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        _, report = attack(
            f"""
            import ctypes, glob, os, socket
            libc = ctypes.CDLL(None, use_errno=True)
            for path in sorted(glob.glob("/proc/*/ns/net")) + ["/proc/{os.getpid()}/ns/net"]:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError as exc:
                    report[path] = "open: " + exc.strerror
                    continue
                joined = libc.setns(fd, 0) == 0
                report[path] = "setns: " + ("JOINED" if joined else os.strerror(ctypes.get_errno()))
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                report["connect"] = "CONNECTED"
            except OSError as exc:
                report["connect"] = type(exc).__name__
            """
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert report["connect"] != "CONNECTED" and "JOINED" not in json.dumps(report), report


def test_no_write_reaches_the_host_through_proc() -> None:
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o777)  # writable by anyone: only the sandbox's view may stop the write
        target = Path(folder) / "escaped.txt"
        _, report = attack(
            f"""
            import glob
            for root in sorted(glob.glob("/proc/*/root")) + ["/proc/{os.getpid()}/root", "/proc/1/root"]:
                try:
                    with open(root + {str(target)!r}, "w") as handle:
                        handle.write("pwned")
                    report[root] = "WROTE"
                except OSError as exc:
                    report[root] = exc.strerror
            """
        )
        assert not target.exists(), report


def test_the_candidate_cannot_kill_the_engineer_or_anything_outside() -> None:
    bystander = os.fork()
    if bystander == 0:  # a process of the engineer's user, outside the sandbox
        signal.pause()
        os._exit(0)
    try:
        _, report = attack(
            f"""
            import os, signal
            for name, pid in (("parent", os.getppid()), ("engineer", {os.getpid()}),
                              ("bystander", {bystander}), ("everyone", -1)):
                try:
                    os.kill(pid, signal.SIGKILL)
                    report[name] = "sent"
                except OSError as exc:
                    report[name] = exc.strerror
            """
        )
        assert report["everyone"] != "sent", report
        assert os.waitpid(bystander, os.WNOHANG) == (0, 0), f"the bystander was killed: {report}"
    finally:
        os.kill(bystander, signal.SIGKILL)
        os.waitpid(bystander, 0)
    # We are still here (the engineer's pid was SIGKILLed, if anything reached it).


@linux_only
def test_escape_syscalls_are_denied() -> None:
    _, report = attack(
        """
        import ctypes, os, pyseccomp
        libc = ctypes.CDLL(None, use_errno=True)
        arch = pyseccomp.system_arch()
        calls = {
            "unshare": (0x10000000,), "setns": (0, 0), "mount": (0, 0, 0, 0, 0), "ptrace": (16, 1, 0, 0),
            "process_vm_readv": (1, 0, 0, 0, 0, 0), "bpf": (0, 0, 0), "keyctl": (0, 0, 0, 0, 0),
            "pivot_root": (0, 0), "perf_event_open": (0, 0, -1, -1, 0), "init_module": (0, 0, 0),
        }
        for name, args in calls.items():
            result = libc.syscall(pyseccomp.resolve_syscall(arch, name), *[ctypes.c_long(a) for a in args])
            report[name] = "ALLOWED" if result >= 0 else os.strerror(ctypes.get_errno())
        flags = 0x10000000 | 0x00020000  # a new user and mount namespace, via fork-like clone
        result = libc.syscall(pyseccomp.resolve_syscall(arch, "clone"), ctypes.c_long(flags | 17), 0, 0, 0, 0)
        if result == 0:
            os._exit(0)
        report["clone with namespace flags"] = "ALLOWED" if result > 0 else os.strerror(ctypes.get_errno())
        for path in ("/sys/fs/cgroup/pids/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs",
                     "/sys/fs/cgroup/cgroup.procs"):
            try:
                with open(path, "w") as handle:
                    handle.write(str(os.getpid()))
                report[path] = "MOVED"
            except OSError as exc:
                report[path] = exc.strerror
        """
    )
    assert not [name for name, outcome in report.items() if outcome in {"ALLOWED", "MOVED"}], report
    assert report["setns"] == report["bpf"] == report["ptrace"] == "Operation not permitted", report


@pytest.mark.skipif(not ROOT, reason="the memory cgroup is the root engineer's; elsewhere the container's")
def test_memory_is_bounded_across_all_the_sandbox_processes() -> None:
    # Each child stays under the per-process address-space cap (2 GiB; the worker holds ~0.8 GiB
    # of it); four of them together (2.4 GiB resident) would not fit the sandbox's 2 GiB.
    _, report = attack(
        """
        import os, time
        done_r, done_w = os.pipe()
        children = []
        for index in range(4):
            pid = os.fork()
            if pid == 0:
                hog = b"x" * (600 << 20)  # touched: resident, not just reserved
                os.write(done_w, bytes([index]))
                time.sleep(60)
                os._exit(len(hog) & 0)
            children.append(pid)
        time.sleep(12)
        os.set_blocking(done_r, False)
        try:
            finished = set(os.read(done_r, 64))
        except BlockingIOError:
            finished = set()
        alive = {index for index, pid in enumerate(children) if os.waitpid(pid, os.WNOHANG) == (0, 0)}
        report["resident"] = len(finished & alive)
        report["finished"] = len(finished)
        for pid in children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass  # killed by the memory cgroup, and reaped above
        """,
        memory_bytes=2 << 30,
        wall_seconds=90,
    )
    assert report["resident"] <= 3, report


def test_what_a_killed_engineer_left_is_removed_at_the_next_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # SIGKILLed by its candidate, the engineer once left its sandbox folder and pids cgroup behind.
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    fake_cgroups, temp = tmp_path / "cgroup", tmp_path / "tmp"
    stale = [
        fake_cgroups / "pids" / f"{cgroups.PREFIX}{dead}-1",
        temp / f"{sandbox.WORKDIR_PREFIX}{dead}-abc",
    ]
    ours = [
        fake_cgroups / "pids" / f"{cgroups.PREFIX}{os.getpid()}-1",
        temp / f"{sandbox.WORKDIR_PREFIX}{os.getpid()}-x",
    ]
    for folder in stale + ours:
        folder.mkdir(parents=True)
    monkeypatch.setattr(cgroups, "ROOT", fake_cgroups)
    monkeypatch.setattr(cgroups, "_own_cgroup", lambda controller: fake_cgroups / controller)
    monkeypatch.setattr(sandbox.tempfile, "gettempdir", lambda: str(temp))
    assert sandbox.remove_leftovers() == 2
    assert not any(folder.exists() for folder in stale)
    assert all(folder.exists() for folder in ours)


@pytest.fixture
def no_memory_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    create = cgroups.SandboxCgroups._create

    def without_memory(self: cgroups.SandboxCgroups, controller: str, name: str, limit: int) -> str:
        return "not available (test)" if controller == "memory" else create(self, controller, name, limit)

    monkeypatch.setattr(cgroups.SandboxCgroups, "_create", without_memory)


@pytest.mark.skipif(not ROOT, reason="the cgroups are required of a root engineer only")
@pytest.mark.usefixtures("no_memory_cgroup")
def test_a_root_engineer_without_a_memory_cgroup_refuses_unless_told_otherwise(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)
    marker = tmp_path / "ran"
    job = {"kind": "check", "source": layer(init=f"open({str(marker)!r}, 'w')"), "class_name": "DeltaNet",
           "budget": BUDGET}  # fmt: skip
    refused = asyncio.run(run_in_sandbox(job, SandboxLimits(wall_seconds=60)))
    assert refused.outcome == "refused"
    assert "memory cgroup: not available (test)" in refused.error
    assert "ASIARCH_ENGINEER_SANDBOX_UNSAFE" in refused.error
    assert not marker.exists()
    allowed = asyncio.run(run_in_sandbox(job, SandboxLimits(wall_seconds=60, allow_unisolated=True)))
    assert allowed.enforcement["memory"] == "not available (test)"
    assert allowed.outcome == "error"  # it ran, and the rest of the sandbox stopped the write
    assert "Read-only file system" in allowed.error or "Permission denied" in allowed.error


def test_a_refused_sandbox_fails_the_call_not_the_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    from asiarch.common.errors import FailedPrecondition
    from asiarch.engineer import pipeline

    async def refuse(*_: object) -> SandboxResult:
        return SandboxResult(outcome="refused", error="missing: seccomp: libseccomp is not available")

    async def ignore(_: object) -> None:
        return None

    monkeypatch.setattr(pipeline, "run_in_sandbox", refuse)
    budget = dataclasses.replace(SANDBOX_BUDGET, wall_clock_seconds=60)
    candidate = pipeline.Candidate("x1", layer(), "DeltaNet", budget)
    checker = pipeline.Pipeline(SandboxLimits(), 64 * 1024, None)
    with pytest.raises(FailedPrecondition, match="libseccomp is not available"):
        asyncio.run(checker.check(candidate, "check", ignore))


def test_a_layer_that_cannot_be_set_up_is_named() -> None:
    from asiarch.engineer.isolation import IsolationError
    from asiarch.engineer.sandbox_child import Lockdown

    def unavailable() -> str:
        raise IsolationError("seccomp", "libseccomp is not available")

    lockdown = Lockdown()
    assert not lockdown.layer("seccomp", unavailable)
    assert lockdown.missing == ["seccomp: libseccomp is not available"]
    assert lockdown.enforcement["seccomp"] == "not enforced (seccomp: libseccomp is not available)"


MASKED_PROC = """
import ctypes, os, sys
from asiarch.engineer import isolation
libc = ctypes.CDLL(None, use_errno=True)
# What a container runtime does: files of the host's /proc (here /proc/timer_list) covered by /dev/null.
assert libc.unshare(isolation.CLONE_NEWNS) == 0
assert libc.mount(None, b"/", None, isolation.MS_REC | isolation.MS_PRIVATE, None) == 0
assert libc.mount(b"/dev/null", b"/proc/timer_list", None, isolation.MS_BIND, None) == 0
isolation.drop_to_unprivileged()
isolation.enter_namespaces(network=True)
if os.fork() == 0:
    print(isolation.mount_own_proc())
    print(sorted(os.listdir("/proc")))
    print(isolation.drop_capabilities())
    sys.stdout.flush()
    os._exit(0)
os.wait()
"""


@pytest.mark.skipif(not ROOT, reason="masking the host's /proc needs root")
def test_under_a_masked_proc_the_sandbox_sees_an_empty_one() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-P", "-c", MASKED_PROC], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    proc_line, listing, capabilities = done.stdout.splitlines()
    assert proc_line.startswith("empty (the host's hidden"), proc_line
    assert listing == "[]"
    assert capabilities.startswith("none")
