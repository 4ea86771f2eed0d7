"""A Triton kernel cache shared by every evaluation, which candidate code can read but never write.

Two folders:
- the shared cache (ASIARCH_ENGINEER_KERNEL_CACHE_DIR), written only by the engineer's own warm
  step (asiarch.engineer.kernel_warm: trusted code in a process of its own, never a candidate);
- each evaluation's overlay, the sandbox child's TRITON_CACHE_DIR inside its fresh folder, which
  is deleted with the folder. Nothing of an overlay is ever copied to the shared cache.

In a sandbox child, Triton looks every compiled kernel, launcher module and autotuning result up
through `OverlayCacheManager` (TRITON_CACHE_MANAGER, set by `overlay_env`): the shared cache
first, then the overlay; whatever the child compiles goes to the overlay only. What keeps a
candidate from poisoning the shared cache:
- it cannot write there: inside the sandbox every mount but the evaluation's folder is
  read-only (isolation.read_only_except), and as root the candidate runs as `nobody` while the
  folder is the engineer's (`prepare_shared_dir` refuses one another user or group could write);
- it cannot make the engineer trust what it wrote: the engineer never reads an overlay, and a
  kernel's key is Triton's hash of its source, compiler, target and options, so a candidate's
  own kernel never answers to a warmed kernel's key;
- a shared entry is used whole or not at all: a group names plain file names in its own key's
  folder, each of which must exist there (else the lookup is a miss and the child compiles).
Importable without Triton (it is Linux-only); the manager class is then inert and never selected.
"""

from __future__ import annotations

import json
import os

from asiarch.common.errors import ConfigError

try:
    from triton.runtime.cache import FileCacheManager
except ImportError:  # no Triton on this platform: nothing compiles, TRITON_CACHE_MANAGER is never read
    FileCacheManager = object  # type: ignore[misc,assignment]

VARIABLE = "ASIARCH_ENGINEER_KERNEL_CACHE_DIR"
# Where the sandbox child finds the shared cache (the overlay is TRITON_CACHE_DIR, as for Triton).
SHARED_ENV = "ASIARCH_KERNEL_CACHE_SHARED"
MANAGER = "asiarch.engineer.kernel_cache:OverlayCacheManager"
# Autotuning results go through the same cache (off by default in Triton): a warmed budget's
# kernels are then neither compiled nor benchmarked again by each candidate.
AUTOTUNE_ENV = {"TRITON_CACHE_AUTOTUNING": "1"}
GROUP_PREFIX = "__grp__"  # Triton's name for the file that lists a compiled kernel's files


def overlay_env(shared_dir: str | None) -> dict[str, str]:
    """The variables that make a sandbox child read `shared_dir` before its own TRITON_CACHE_DIR."""
    if not shared_dir:
        return {}
    return {"TRITON_CACHE_MANAGER": MANAGER, SHARED_ENV: shared_dir, **AUTOTUNE_ENV}


def default_dir() -> str:
    """The engineer's own cache folder: $XDG_CACHE_HOME (else ~/.cache)/asiarch/triton-kernels."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "asiarch", "triton-kernels")


def prepare_shared_dir(path: str) -> str | None:
    """The shared folder as an absolute path, created if missing; None for "" (no shared cache).

    Raises ConfigError when the folder cannot be made or someone else could write it: whoever can
    write it decides what every candidate's kernels run.
    """
    if not path:
        return None
    folder = os.path.realpath(os.path.expanduser(path))
    try:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        info = os.stat(folder)
    except OSError as exc:
        raise ConfigError(f"{VARIABLE}: cannot create {folder!r}: {exc.strerror or exc}") from None
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{VARIABLE}: {folder!r} belongs to uid {info.st_uid}, not to the engineer (uid {os.geteuid()})"
        )
    if info.st_mode & 0o022:
        raise ConfigError(
            f"{VARIABLE}: {folder!r} is writable by its group or others (mode {info.st_mode & 0o777:o}); "
            "chmod go-w it or choose another folder"
        )
    # Readable by all: as root the sandbox runs as `nobody`, who must read what the engineer compiled.
    os.chmod(folder, 0o755)
    return folder


def _plain_name(filename: str) -> bool:
    return bool(filename) and os.path.basename(filename) == filename and filename not in (".", "..")


class OverlayCacheManager(FileCacheManager):  # type: ignore[misc,valid-type]
    """Triton's file cache over the overlay (TRITON_CACHE_DIR), read after the shared cache (SHARED_ENV).

    Writes (`put`, `put_group`) are FileCacheManager's: to the overlay only.
    """

    def __init__(self, key: str, override: bool = False, dump: bool = False) -> None:
        super().__init__(key, override=override, dump=dump)
        shared = os.environ.get(SHARED_ENV, "")
        # Dumps and overrides are one process's debugging aids: only the cache proper is shared.
        self.shared_dir = os.path.join(shared, key) if shared and not (override or dump) else None

    def _shared(self, filename: str) -> str | None:
        if self.shared_dir is None or not _plain_name(filename):
            return None
        path = os.path.join(self.shared_dir, filename)
        return path if os.path.isfile(path) else None

    def get_file(self, filename: str) -> str | None:
        return self._shared(filename) or super().get_file(filename)

    def get_group(self, filename: str) -> dict[str, str] | None:
        shared = self._shared_group(filename)
        return shared if shared is not None else super().get_group(filename)

    def _shared_group(self, filename: str) -> dict[str, str] | None:
        """The shared group, with its paths rebuilt from the file names in it; None unless complete."""
        path = self._shared(GROUP_PREFIX + filename)
        if path is None:
            return None
        try:
            with open(path) as handle:
                names = json.load(handle)["child_paths"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(names, dict) or not names:
            return None
        group = {name: self._shared(name) for name in names}
        if not all(group.values()):
            return None
        return {name: found for name, found in group.items() if found is not None}
