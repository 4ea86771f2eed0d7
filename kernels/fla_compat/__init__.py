"""Run code written against flash-linear-attention ("FLA") on this library.

Research code imports `fla.ops.delta_rule`, `fla.modules`, `fla.layers.utils`
and so on. FLA's kernels are Triton kernels: they need a GPU, and on a CPU
they fail when called (`0 active drivers`), even though `import fla` works.
With ASIARCH_FLA_COMPAT set, a start-up hook (the one-line
`asiarch-fla-compat.pth` installed into site-packages) calls `install()`,
which lets `import fla` resolve to a thin package of re-exports from
`asiarch.kernels` (the `shim/fla` folder next to this file), whose functions
run on a CPU as well as on CUDA:

- `1`: the shim unless FLA can run here, i.e. unless a real FLA is importable
  *and* torch sees a CUDA device; so FLA-based code runs on a CPU whether or
  not flash-linear-attention is installed, and a GPU with FLA gets real FLA.
- `shim`: always the shim, even over a real FLA on a GPU (e.g. to evaluate
  on CPU tensors on a GPU machine, or where FLA refuses a kernel).
- unset or `0`: off; `import fla` is whatever is installed.

The choice is made when `fla` is first imported, not at start-up: the finder
sits first on sys.meta_path and, for the name `fla` only, asks the other
finders for a real FLA and (only then) torch for a device. So a real FLA that
becomes importable after start-up (a later .pth file, a run-time sys.path
entry) is still taken into account.

The hook runs in every interpreter start, so this module must stay cheap: no
torch (or other heavy) imports at module level or in `install()`; torch is
imported only when `fla` itself is imported and a real FLA is there.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType

ENV_VAR = "ASIARCH_FLA_COMPAT"
SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")
MODES = ("1", "shim")
OFF = ("", "0")

_warned = False

__all__ = ["ENV_VAR", "MODES", "SHIM_DIR", "install", "is_installed", "prefers_shim", "uninstall"]


def prefers_shim(mode: str, real_fla: bool, cuda_available: bool) -> bool:
    """Whether `import fla` should get the shim (the whole policy, without side effects)."""
    if mode == "shim":
        return True
    return not (real_fla and cuda_available)


def _cuda_available() -> bool:
    # Imported here, not at start-up: torch costs seconds, and `import fla`
    # (real or shim) imports it right after anyway.
    import torch

    return torch.cuda.is_available()


class ShimFinder:
    """Meta-path finder for the top-level name `fla`: the shim, or a real FLA that can run.

    Only the top-level name is handled; `fla.*` submodules are then found by the
    regular machinery through the chosen package's __path__.
    """

    mode = "1"

    @classmethod
    def find_spec(
        cls,
        fullname: str,
        path: list[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != "fla":
            return None
        real = None if cls.mode == "shim" else cls.real_spec()
        if not prefers_shim(cls.mode, real is not None, real is not None and _cuda_available()):
            return real
        return PathFinder.find_spec(fullname, [SHIM_DIR])

    @classmethod
    def real_spec(cls) -> ModuleSpec | None:
        """The spec a real FLA would be imported from, asking every other finder in order."""
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec("fla", None)
            if spec is not None:
                return spec
        return None


def is_installed() -> bool:
    """Whether the shim finder is active in this interpreter."""
    return ShimFinder in sys.meta_path


def install(mode: str | None = None) -> bool:
    """Activate the `fla` finder for `mode` (default: ASIARCH_FLA_COMPAT).

    Returns True when the finder is (now) active. Idempotent: site.py may
    process a .pth file more than once (this venv's Python does, once from
    venv() and once from main()). An unknown value is reported on stderr, once,
    and ignored: a start-up hook cannot refuse to start.
    """
    global _warned
    mode = os.environ.get(ENV_VAR, "") if mode is None else mode
    if mode in OFF:
        return False
    if mode not in MODES:
        if not _warned:
            print(f"asiarch: ignoring {ENV_VAR}={mode!r}: expected 1, shim or 0", file=sys.stderr)
            _warned = True
        return False
    ShimFinder.mode = mode
    if not is_installed():
        # First, so that the choice is ours even when a real FLA is installed.
        sys.meta_path.insert(0, ShimFinder)
    return True


def uninstall() -> None:
    """Deactivate the finder (a later `import fla` gets the installed FLA, if any)."""
    while ShimFinder in sys.meta_path:
        sys.meta_path.remove(ShimFinder)
