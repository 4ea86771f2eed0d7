"""Static checks on candidate source: nothing is executed, everything is read from the AST.

They are the first, cheap line of defence and give the researcher precise,
line-numbered feedback. They are not the security boundary: the sandbox is
(generated code can be clever; a check that misses something must not be
the only thing between that code and the machine).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from asiarch.common.source import SourceError, parse_source

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_CLASS_NAME = "DeltaNet"

# Modules a candidate may import (the module itself and its submodules).
ALLOWED_IMPORTS = (
    "__future__",
    "asiarch.kernels",
    "dataclasses",
    "einops",
    "fla",
    "functools",
    "math",
    "torch",
    "typing",
)
# Submodules of allowed packages that can load code, touch files or spawn processes.
BANNED_SUBMODULES = (
    "torch.hub",
    "torch.utils.cpp_extension",
    "torch.utils.data",
    "torch.multiprocessing",
    "torch.distributed",
    "torch.package",
    "torch.serialization",
    "torch.onnx",
    "torch.profiler",
    "torch.utils.tensorboard",
)
# Names that must not appear anywhere, as a name or an attribute.
BANNED_NAMES = {
    "__import__": "dynamic import",
    "breakpoint": "debugger",
    "compile": "code compilation",
    "ctypes": "foreign function calls",
    "eval": "dynamic code execution",
    "exec": "dynamic code execution",
    "globals": "access to module globals",
    "importlib": "dynamic import",
    "input": "reading stdin",
    "locals": "access to local scopes",
    "multiprocessing": "processes",
    "open": "file access",
    "os": "operating-system access",
    "pathlib": "file access",
    "pickle": "arbitrary code on load",
    "shutil": "file access",
    "signal": "signal handling",
    "socket": "network access",
    "subprocess": "processes",
    "sys": "interpreter access",
    "threading": "threads",
    "vars": "access to object namespaces",
    "getattr": "attribute access by string (use plain attributes)",
    "setattr": "attribute assignment by string",
    "delattr": "attribute deletion by string",
}
# Attributes on torch that load or save files or native code.
BANNED_TORCH_ATTRIBUTES = {
    "load": "torch.load unpickles arbitrary objects",
    "save": "torch.save writes files",
    "hub": "torch.hub downloads and runs code",
    "load_library": "loads native code",
    "from_file": "reads files",
    "compile": "torch.compile spawns compiler processes",
}
# Dunder attributes that are the usual ways out of a restricted namespace.
BANNED_DUNDERS = {
    "__builtins__",
    "__class__",
    "__bases__",
    "__base__",
    "__code__",
    "__closure__",
    "__dict__",
    "__getattribute__",
    "__globals__",
    "__loader__",
    "__mro__",
    "__reduce__",
    "__reduce_ex__",
    "__spec__",
    "__subclasses__",
}


@dataclass(frozen=True)
class StaticCheck:
    """Outcome of one static check; line is 1-based, 0 when not line-specific."""

    name: str
    passed: bool
    message: str = ""
    line: int = 0


def _allowed_module(module: str) -> bool:
    if any(module == b or module.startswith(b + ".") for b in BANNED_SUBMODULES):
        return False
    return any(module == a or module.startswith(a + ".") for a in ALLOWED_IMPORTS)


def _where(node: ast.expr | ast.stmt) -> tuple[int, int]:
    # Where an expression ends orders a chain like a.__class__.__bases__ by reading order.
    return node.lineno, node.end_col_offset or node.col_offset


def _root_name(node: ast.expr) -> str:
    """The name an attribute chain starts from (`torch` for torch.nn.functional), '' when none."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _import_problems(tree: ast.Module) -> Iterator[tuple[tuple[int, int], str]]:
    allowed = ", ".join(ALLOWED_IMPORTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield _where(node), "relative imports are not allowed"
                continue
            base = node.module or ""
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names if base == "torch"]
        else:
            continue
        for module in modules:
            if not _allowed_module(module):
                yield (
                    _where(node),
                    f"import of {module!r} is not allowed (allowed: {allowed})",
                )


def _name_problems(tree: ast.Module) -> Iterator[tuple[tuple[int, int], str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in BANNED_NAMES:
            yield (
                _where(node),
                f"use of {node.id!r} is not allowed ({BANNED_NAMES[node.id]})",
            )
        elif isinstance(node, ast.Attribute):
            if node.attr in BANNED_DUNDERS:
                yield _where(node), f"access to {node.attr!r} is not allowed"
            elif node.attr in BANNED_NAMES and node.attr not in {"compile", "input", "open"}:
                yield (
                    _where(node),
                    f"use of {node.attr!r} is not allowed ({BANNED_NAMES[node.attr]})",
                )
            elif node.attr in BANNED_TORCH_ATTRIBUTES and _root_name(node.value) == "torch":
                yield (
                    _where(node),
                    f"torch.{node.attr} is not allowed ({BANNED_TORCH_ATTRIBUTES[node.attr]})",
                )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in BANNED_DUNDERS:
            yield _where(node), f"the string {node.value!r} is not allowed"


def _class_problem(tree: ast.Module, class_name: str) -> tuple[int, str] | None:
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    if any(node.name == class_name for node in classes):
        return None
    found = ", ".join(node.name for node in classes) or "none"
    return 0, f"class {class_name!r} is not defined at module level (classes found: {found})"


def run_static_checks(
    source: str, class_name: str = DEFAULT_CLASS_NAME, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[StaticCheck]:
    """All static checks in order; stops after the first failing check (later ones need earlier ones)."""
    results: list[StaticCheck] = []
    size = len(source.encode())
    if size > max_bytes:
        results.append(StaticCheck("static.size", False, f"source is {size} bytes; the limit is {max_bytes}"))
        return results
    results.append(StaticCheck("static.size", True))
    try:
        tree = parse_source(source)
    except SourceError as exc:
        results.append(StaticCheck("static.parse", False, exc.reason, exc.line))
        return results
    results.append(StaticCheck("static.parse", True))
    for name, problems in (
        ("static.imports", list(_import_problems(tree))),
        ("static.banned", list(_name_problems(tree))),
    ):
        if problems:
            # ast.walk is breadth-first; report the first problem in reading order.
            (line, _), first = min(problems, key=lambda item: item[0])
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            results.append(StaticCheck(name, False, f"line {line}: {first}{more}", line))
            return results
        results.append(StaticCheck(name, True))
    problem = _class_problem(tree, class_name or DEFAULT_CLASS_NAME)
    if problem:
        results.append(StaticCheck("static.class", False, problem[1], problem[0]))
        return results
    results.append(StaticCheck("static.class", True))
    return results
