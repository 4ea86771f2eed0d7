"""Run code written against flash-linear-attention ("FLA") on this library.

Research code imports `fla.ops.delta_rule`, `fla.modules`, `fla.layers.utils`
and so on; FLA itself needs a CUDA GPU. With ASIARCH_FLA_COMPAT=1 in the
environment, a start-up hook (the one-line `asiarch-fla-compat.pth` installed
into site-packages) calls `install()`, which makes `import fla` resolve to a
thin package of re-exports from `asiarch.kernels` (the `shim/fla` folder next
to this file), so such code runs unchanged on a CPU.

A real FLA always wins: `install()` does nothing when `fla` is importable at
start-up, and the shim is served by a finder placed *last* on sys.meta_path,
so a real FLA that becomes importable later (a .pth file processed after ours,
a sys.path entry added at run time) is still found first. That is why this is
a fallback finder rather than a sys.path entry: an appended sys.path entry
would sit in front of any path appended after it.

The hook runs in every interpreter start, so this module must stay cheap: no
torch (or other heavy) imports here; the shim imports torch only when `fla`
itself is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType

ENV_VAR = "ASIARCH_FLA_COMPAT"
SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")

__all__ = ["ENV_VAR", "SHIM_DIR", "install", "is_installed"]


class ShimFinder:
    """Meta-path finder of last resort: `fla` from SHIM_DIR when no other finder found one.

    Only the top-level name is handled; `fla.*` submodules are then found by the
    regular machinery through the shim package's __path__.
    """

    @classmethod
    def find_spec(
        cls,
        fullname: str,
        path: list[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != "fla":
            return None
        return PathFinder.find_spec(fullname, [SHIM_DIR])


def is_installed() -> bool:
    """Whether the shim finder is active in this interpreter."""
    return ShimFinder in sys.meta_path


def install() -> bool:
    """Activate the `fla` shim if ASIARCH_FLA_COMPAT=1 and no real FLA is importable.

    Returns True when the shim is (now) active. Idempotent.
    """
    if os.environ.get(ENV_VAR) != "1":
        return False
    if is_installed():
        return True
    if importlib.util.find_spec("fla") is not None:
        return False
    sys.meta_path.append(ShimFinder)
    return True
