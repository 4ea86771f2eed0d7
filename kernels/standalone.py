"""A standalone copy of the kernels: what it offers, which files it needs, how it is imported.

`asiarch results export` writes a layer into one Python file that runs with torch alone. Its
kernels and its backbone are not re-implemented there: they are this package's own pure-PyTorch
modules, copied file by file and imported under a private package name by `load_copy`, whose
source goes into the file too. So the ops have one implementation, and changing one touches one
place. This module owns:

- `OFFERS`: the FLA names a copy offers, each with the FLA module a layer imports it from and
  the subpackage of asiarch.kernels that defines it (from the registry, plus FLA's aliases);
- `files`: the files a copy of some subpackages needs: their `__init__.py`, their parents', and
  every module those import at module level, transitively. Imports inside these files are
  relative, so the copy works under any name; an absolute `asiarch` import is refused. The
  Triton modules, imported inside a function only, stay out: a copy runs the PyTorch core
  (`common/dispatch.py`);
- `load_copy`, written to be pasted into such a file (standard library only).

Imports no torch: the orchestrator, which has none, reads it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .registry import kernels

ROOT = Path(__file__).parent
# The language-model backbone every exported layer runs in.
BACKBONE = "models"


def _offers() -> dict[str, tuple[str, str]]:
    offers = {e.name: (e.fla_name.rpartition(".")[0], e.family) for e in kernels() if e.fla_name}
    # FLA exports these too; the registry (what ListKernels shows) lists one name per kernel.
    offers["l2_norm"] = offers["l2norm"]
    offers["L2Norm"] = ("fla.modules", "modules")
    return offers


# FLA's name -> (the FLA module a layer imports it from, the subpackage of asiarch.kernels defining it).
OFFERS: dict[str, tuple[str, str]] = _offers()


def _module_path(package: list[str], module: str) -> str | None:
    """The file of `module` (dotted, under `package`), or None when it is not a file of this package."""
    parts = [*package, *module.split(".")] if module else package
    for candidate in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _imported(path: str, source: str) -> list[str]:
    """The files of this package that `path` imports at module level (function-level imports are lazy)."""
    package = path.split("/")[:-1]
    found = []
    for node in ast.parse(source, path).body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "asiarch" for a in node.names):
            raise ValueError(f"{path}: a standalone copy cannot import asiarch; import relatively")
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if (node.module or "").split(".")[0] == "asiarch":
                raise ValueError(f"{path}: a standalone copy cannot import asiarch; import relatively")
            continue
        base = package[: len(package) - (node.level - 1)]
        found.append(_module_path(base, node.module or ""))
        # `from . import name` may name a module
        found += [_module_path(base, ".".join(filter(None, (node.module, a.name)))) for a in node.names]
    return [f for f in found if f is not None]


def _parents(path: str) -> list[str]:
    folders = path.split("/")[:-1]
    return ["/".join([*folders[:i], "__init__.py"]) for i in range(len(folders) + 1)]


def files(subpackages: Iterable[str]) -> dict[str, str]:
    """Path under asiarch.kernels -> source, sorted by path: what a copy of these subpackages needs."""
    pending = [f"{name}/__init__.py" for name in subpackages]
    found: dict[str, str] = {}
    while pending:
        path = pending.pop()
        if path in found:
            continue
        found[path] = (ROOT / path).read_text(encoding="utf-8")
        pending += _parents(path) + _imported(path, found[path])
    return dict(sorted(found.items()))


def load_copy(package: str, files: dict[str, str]) -> ModuleType:
    """Import `files` (path in the package -> source, as `files()` gives them) as the package `package`.

    Pasted into exported files: it uses only the standard library, imported here. Tracebacks
    show the copied lines (the loader serves the source to linecache).
    """
    import importlib
    import importlib.abc
    import importlib.util
    import sys

    class CopiedFiles(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
        def _path(self, name: str) -> str | None:
            if name != package and not name.startswith(package + "."):
                return None
            folder = name[len(package) + 1 :].replace(".", "/")
            for path in (f"{folder}/__init__.py".lstrip("/"), f"{folder}.py"):
                if path in files:
                    return path
            return None

        def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
            if self._path(name) is None:
                return None
            return importlib.util.spec_from_loader(name, self, is_package=self.is_package(name))

        def is_package(self, name: str) -> bool:
            return (self._path(name) or "").endswith("__init__.py")

        def get_source(self, name: str) -> str:
            path = self._path(name)
            if path is None:
                raise ImportError(name=name)
            return files[path]

        def get_code(self, name: str):  # type: ignore[no-untyped-def]
            filename = f"{package}/{self._path(name)}"
            return compile(self.get_source(name), filename, "exec", dont_inherit=True)

    if package not in sys.modules:
        sys.meta_path.append(CopiedFiles())
    return importlib.import_module(package)
