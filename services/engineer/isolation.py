"""The Linux mechanisms that keep candidate code away from the host, one function per layer.

Used only by sandbox_child, in this order (see its docstring for why):
1. `reveal_python_tree` (root only): in a private mount namespace, a tmpfs over every
   directory on the interpreter's paths that an unprivileged user cannot enter (a 0700 home),
   holding bind mounts of just the paths the interpreter needs — so that
2. `drop_to_unprivileged` can become `nobody` on the host and still import torch;
3. `enter_namespaces`: its own user (mapped to that unprivileged id, never to root), mount,
   pid and (optionally) network namespaces — done unprivileged, so the same path serves a
   non-root engineer;
4. after a fork into the new pid namespace: `mount_own_proc`, `read_only_except`;
5. in the process that runs the candidate: `drop_capabilities` (bounding, ambient,
   effective, permitted, inheritable sets all empty), `no_new_privileges`, `install_seccomp`.

Every function either returns a line for the result's `enforcement` or raises
`IsolationError` naming the layer that could not be set up; sandbox_child decides whether
that refuses the evaluation. The seccomp filter is compiled by libseccomp (through
pyseccomp, a ctypes binding with the API of libseccomp's own Python module), not by hand.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterable

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_NEWTIME,
)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 0x400, 0x800, 0x200000
# statvfs's f_flag bits → the mount flags that must be kept on a remount inside a user namespace
# (the kernel refuses to clear a flag the outer namespace locked).
KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
# Kernel file systems: their files are not writable by an unprivileged user, and /proc is replaced.
SKIP_MOUNTS = ("/proc", "/sys", "/dev")
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
NOBODY = 65534


def _last_capability() -> int:
    """Read while /proc is still the host's (the sandbox's own may be empty)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except OSError:
        return 63  # dropping a capability the kernel does not know is EINVAL, which is ignored


LAST_CAPABILITY = _last_capability()
# Denied outright (EPERM): every way out of the namespaces, into other processes or into the kernel.
DENIED_SYSCALLS = (
    "setns", "unshare", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup", "lookup_dcookie",
)  # fmt: skip


try:  # imported at once, by the launcher, so that finding libseccomp runs before any lockdown
    import pyseccomp as seccomp

    SECCOMP_MISSING = ""
except (ImportError, RuntimeError) as exc:  # RuntimeError: libseccomp.so.2 is not installed
    seccomp = None
    SECCOMP_MISSING = f"libseccomp is not available ({exc})"


class IsolationError(Exception):
    """One layer of isolation could not be set up; the message names it and why."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"{layer}: {reason}")
        self.layer = layer


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


def _call(layer: str, result: int) -> None:
    if result != 0:
        raise IsolationError(layer, os.strerror(ctypes.get_errno()))


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text else None


def _mount(
    layer: str, source: str | None, target: str, fstype: str | None, flags: int, data: str = ""
) -> None:
    _call(layer, _libc.mount(_bytes(source), target.encode(), _bytes(fstype), flags, _bytes(data)))


def _prctl(layer: str, option: int, arg: int = 0) -> None:
    _call(layer, _libc.prctl(option, arg, 0, 0, 0))


def _searchable_by_others(path: str) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def _hidden_directory(paths: Iterable[str]) -> tuple[str, set[str]] | None:
    """The shallowest directory on any path that others cannot enter, and its children the paths need."""
    found: dict[str, set[str]] = {}
    for path in paths:
        parts = os.path.realpath(path).split(os.sep)[1:]
        for depth in range(len(parts)):
            directory = os.sep + os.sep.join(parts[:depth])
            if not _searchable_by_others(directory):
                found.setdefault(directory, set()).add(parts[depth])
                break
    if not found:
        return None
    directory = min(found, key=len)
    return directory, found[directory]


def reveal_python_tree(paths: Iterable[str]) -> str:
    """Root only: a private mount namespace in which an unprivileged user can read `paths`.

    A directory it cannot enter (mode 0700) is covered by a tmpfs that holds bind mounts of
    only the children the paths go through; nothing else in that directory becomes visible.
    """
    layer = "private mount namespace"
    _call(layer, _libc.unshare(CLONE_NEWNS))
    _mount(layer, None, "/", None, MS_REC | MS_PRIVATE)
    paths = [p for p in paths if os.path.exists(p)]
    covered = []
    while hidden := _hidden_directory(paths):
        directory, children = hidden
        # O_PATH handles keep the originals reachable after the tmpfs covers their parent.
        handles = {child: os.open(os.path.join(directory, child), os.O_PATH) for child in children}
        try:
            _mount(layer, "tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            for child, handle in handles.items():
                target = os.path.join(directory, child)
                if stat.S_ISDIR(os.fstat(handle).st_mode):
                    os.mkdir(target)
                else:
                    open(target, "w").close()  # an empty mount point
                _mount(layer, f"/proc/self/fd/{handle}", target, None, MS_BIND | MS_REC)
        finally:
            for handle in handles.values():
                os.close(handle)
        covered.append(directory)
    return f"only the interpreter's paths visible under {', '.join(covered)}" if covered else "nothing hidden"


def drop_to_unprivileged(uid: int = NOBODY, gid: int = NOBODY) -> str:
    """Root only: become `nobody` on the host (every capability goes with the uid change)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    # setuid clears "dumpable", which makes /proc/self root's: the user namespace maps could not be written.
    _prctl("user", PR_SET_DUMPABLE, 1)
    return f"uid {uid} on the host (was root)"


def enter_namespaces(network: bool) -> str:
    """New user, mount, pid, IPC, UTS (and network) namespaces; the user maps only to our own ids.

    The pid namespace takes effect for the children: the caller forks next.
    """
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        raise IsolationError("user namespace", "refusing to map the sandbox to root on the host")
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if network:
        flags |= CLONE_NEWNET
    _call("user, pid and mount namespaces", _libc.unshare(flags))
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    kinds = f"user (uid {uid} → {uid}), mount, pid, IPC, UTS"
    return kinds + (", network (empty: no route anywhere)" if network else "")


def mount_own_proc() -> str:
    """A /proc of the new pid namespace: no host process is visible, none is reachable through it.

    The kernel refuses a new proc mount where parts of the old one are covered (a container's
    masked /proc/kcore, a read-only /proc/sys): there, an empty /proc hides the host's instead.
    """
    try:
        _mount("/proc", "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except IsolationError as exc:
        _mount("/proc", "tmpfs", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555,size=4k")
        return f"empty (the host's hidden; a proc of its own was refused: {exc})"
    return "own (only the sandbox's processes)"


def read_only_except(workdir: str) -> str:
    """Every mount read-only but `workdir` (bound onto itself first so it stays writable)."""
    layer = "read-only file system"
    _mount(layer, workdir, workdir, None, MS_BIND | MS_REC)
    with open("/proc/self/mountinfo") as handle:
        targets = {line.split()[4].replace("\\040", " ") for line in handle}
    failed = []
    for target in sorted(targets, key=len):
        if target == workdir or (target.startswith(SKIP_MOUNTS) and target != "/dev/shm"):
            continue
        try:
            flags = os.statvfs(target).f_flag
            kept = sum(mount_flag for st_flag, mount_flag in KEPT_FLAGS.items() if flags & st_flag)
            _mount(layer, None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        except (OSError, IsolationError) as exc:
            if target == "/":
                raise IsolationError(layer, f"/ stays writable: {exc}") from exc
            failed.append(target)
    os.chdir(workdir)  # the cwd still points into the mount under the new bind mount
    suffix = f" ({len(failed)} mount points not remounted: {', '.join(failed[:3])})" if failed else ""
    return f"read-only except the sandbox directory{suffix}"


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> str:
    """Empty every capability set, the bounding set included, so nothing can be regained."""
    layer = "capabilities"
    for cap in range(LAST_CAPABILITY + 1):
        result = _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        if result != 0 and ctypes.get_errno() != errno.EINVAL:
            raise IsolationError(layer, f"bounding set: {os.strerror(ctypes.get_errno())}")
    with contextlib.suppress(IsolationError):  # kernels before 4.3 have no ambient set
        _prctl(layer, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header, data = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _call(layer, _libc.capset(ctypes.byref(header), data))
    _call(layer, _libc.capget(ctypes.byref(header), data))
    if any(word.effective or word.permitted or word.inheritable for word in data):
        raise IsolationError(layer, "the kernel still reports capabilities after dropping them")
    return "none (bounding set empty)"


def no_new_privileges() -> str:
    _prctl("no_new_privs", PR_SET_NO_NEW_PRIVS, 1)
    return "set (no setuid binary or file capability can raise privileges)"


def install_seccomp() -> str:
    """Deny (EPERM) the escape and introspection syscalls, namespace flags on clone, group signals."""
    if seccomp is None:
        raise IsolationError("seccomp", SECCOMP_MISSING)
    denied = seccomp.ERRNO(errno.EPERM)
    syscall_filter = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        syscall_filter.add_rule(denied, name)
    for flag in NAMESPACE_FLAGS:
        syscall_filter.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, out of a filter's sight: ENOSYS makes libc fall back to clone.
    syscall_filter.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # A negative pid names a process group (-1: every process): only the caller's own group (pid 0)
    # may be signalled as a group; single pids are confined by the pid namespace.
    for name in ("kill", "rt_sigqueueinfo"):
        syscall_filter.add_rule(denied, name, seccomp.Arg(0, seccomp.MASKED_EQ, 1 << 31, 1 << 31))
    try:
        syscall_filter.load()
    except OSError as exc:
        raise IsolationError("seccomp", f"the filter could not be loaded: {exc}") from exc
    return f"filter denies {len(DENIED_SYSCALLS)} syscalls, namespace clones and group signals"
