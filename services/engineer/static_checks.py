"""Static checks on candidate source: nothing is executed, everything is read from the AST.

They are the first, cheap line of defence and give the researcher precise,
line-numbered feedback. They are not the security boundary: the sandbox is
(generated code can be clever; a check that misses something must not be
the only thing between that code and the machine).

Three habits of research code (ASI-Arch's published layers, issue 17) are accepted, each in a
form that cannot be turned into what the rule it relaxes is there to stop:
- `torch.compile` only as a function's bare `@torch.compile`, or called with the function alone
  and constant `mode=`, `fullgraph=`, `dynamic=` (COMPILE_KEYWORDS): `backend=` and `options=`
  choose code to run (a callable backend, a C++ compiler command), and any other use (`c =
  torch.compile`, `from torch import compile`) is rejected. In the sandbox torch.compile is
  `candidate.CompileShim`, which accepts the same keywords only.
- imports directly under `if TYPE_CHECKING:` / `if typing.TYPE_CHECKING:` are not import-checked
  when that name can only be typing's False: bound once in the whole module, by a module-level
  `from typing import TYPE_CHECKING` / `import typing` without `as`, never assigned, no star
  import (`type_checking_guards`). An `else:` branch is checked like any code, and the loader
  removes the guarded imports before the code runs, so they never execute, whatever the flag.
- a banned builtin's name (`input`, `open`, ...) as a function's parameter or local variable:
  allowed where Python resolves the name to that local, never to the builtin (decided by the
  standard library's `symtable`, the compiler's own scoping); everywhere else it is banned.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from collections.abc import Iterator
from dataclasses import dataclass

from asiarch.common.contract import DEFAULT_CLASS_NAME
from asiarch.common.source import SourceError, parse_source

DEFAULT_MAX_BYTES = 64 * 1024

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
    "torch._dynamo",
    "torch._inductor",
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
    "_dynamo": "the compiler's internals choose what code runs",
    "_inductor": "the compiler's internals choose what code runs",
}
# The keywords torch.compile may be given, and the constant values each accepts. Not `backend=` or
# `options=`: they choose code to run (any callable; a C++ compiler command).
COMPILE_KEYWORDS: dict[str, tuple[object, ...]] = {
    "mode": (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "fullgraph": (False, True),
    "dynamic": (None, False, True),
}
COMPILE_FORMS = "accepted: @torch.compile, or torch.compile(fn) with constant mode=, fullgraph=, dynamic="
# Banned names that are builtins: as a function's own (or enclosing function's) variable they are not.
SHADOWABLE = frozenset(name for name in BANNED_NAMES if hasattr(builtins, name))
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
    "__self__",  # a builtin function's __self__ is the builtins module: len.__self__.input
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


Problem = tuple[tuple[int, int], str]
# Statements and patterns that bind their `name`.
NAMED_BINDINGS = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.ExceptHandler,
    ast.MatchAs,
    ast.MatchStar,
)
Scope = tuple[int, str]  # symtable's (line, name) of a scope: (0, "top") for the module
SCOPE_NAMES = {
    ast.ListComp: "listcomp",
    ast.SetComp: "setcomp",
    ast.DictComp: "dictcomp",
    ast.GeneratorExp: "genexpr",
}


def _binds(node: ast.AST, name: str) -> bool:
    """Whether `node` (re)binds or unbinds `name` in any of Python's ways; a star import may bind anything."""
    if isinstance(node, ast.Name | ast.Attribute):
        bound = node.id if isinstance(node, ast.Name) else node.attr
        return bound == name and not isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.alias):
        return node.name == "*" or (node.asname or node.name.split(".")[0]) == name
    if isinstance(node, ast.Global | ast.Nonlocal):
        return name in node.names
    if isinstance(node, ast.MatchMapping):
        return node.rest == name
    if isinstance(node, ast.arg):
        return node.arg == name
    return isinstance(node, NAMED_BINDINGS) and node.name == name


def _bound_only_by_import(tree: ast.Module, name: str, module: str) -> bool:
    """`name` is bound once in the whole module: by a module-level `from module import name` (or
    `import name` when module == name), without `as`. An attribute store of `name` counts as a binding."""
    found = [node for node in ast.walk(tree) if _binds(node, name)]
    if len(found) != 1:
        return False
    for statement in tree.body:
        imports_it = (
            isinstance(statement, ast.ImportFrom) and statement.module == module and not statement.level
        ) or (isinstance(statement, ast.Import) and module == name)
        if imports_it and any(alias is found[0] and alias.asname is None for alias in statement.names):
            return True
    return False


def type_checking_guards(tree: ast.Module) -> list[ast.If]:
    """The `if TYPE_CHECKING:` / `if typing.TYPE_CHECKING:` blocks whose test can only be typing's False."""
    flag_ok = _bound_only_by_import(tree, "TYPE_CHECKING", "typing")
    module_ok = _bound_only_by_import(tree, "typing", "typing") and not any(
        _binds(node, "TYPE_CHECKING") and isinstance(node, ast.Attribute) for node in ast.walk(tree)
    )
    guards = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        bare = flag_ok and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
        qualified = (
            module_ok
            and isinstance(test, ast.Attribute)
            and test.attr == "TYPE_CHECKING"
            and isinstance(test.value, ast.Name)
            and test.value.id == "typing"
        )
        if bare or qualified:
            guards.append(node)
    return guards


def _guarded_imports(tree: ast.Module) -> set[int]:
    """ids of the imports directly in a TYPE_CHECKING block's body (its `else:` is not guarded)."""
    return {
        id(statement)
        for guard in type_checking_guards(tree)
        for statement in guard.body
        if isinstance(statement, ast.Import | ast.ImportFrom)
    }


def _import_problems(tree: ast.Module) -> Iterator[Problem]:
    allowed = ", ".join(ALLOWED_IMPORTS)
    guarded = _guarded_imports(tree)
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue  # never executed: typing.TYPE_CHECKING is False, and the loader removes it
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield _where(node), "relative imports are not allowed"
                continue
            base = node.module or ""
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names if base == "torch"]
            for alias in node.names:  # the checks of torch.<name> must not be sidestepped by a bare name
                reason = BANNED_TORCH_ATTRIBUTES.get(alias.name, COMPILE_FORMS * (alias.name == "compile"))
                if base == "torch" and reason:
                    yield _where(node), f"'from torch import {alias.name}' is not allowed ({reason})"
        else:
            continue
        for module in modules:
            if not _allowed_module(module):
                yield (
                    _where(node),
                    f"import of {module!r} is not allowed (allowed: {allowed})",
                )


def _scope_parts(node: ast.AST) -> tuple[Scope, list[ast.AST], list[ast.AST]] | None:
    """For a node that opens a scope: its symtable key, the children inside it and those evaluated outside."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        arguments = node.args
        outside: list[ast.AST] = [*arguments.defaults, *(d for d in arguments.kw_defaults if d)]
        if isinstance(node, ast.Lambda):
            return (node.lineno, "lambda"), [arguments, node.body], outside
        outside += node.decorator_list + ([node.returns] if node.returns else [])
        return (node.lineno, node.name), [arguments, *node.body], outside
    if isinstance(node, ast.ClassDef):
        return (node.lineno, node.name), list(node.body), [*node.decorator_list, *node.bases, *node.keywords]
    if type(node) in SCOPE_NAMES:
        first, *rest = node.generators  # type: ignore[attr-defined]
        inside = [n for n in ast.iter_child_nodes(node) if n is not first] + [first.target, *first.ifs]
        return (node.lineno, SCOPE_NAMES[type(node)]), inside + rest, [first.iter]
    return None


def _scoped_walk(tree: ast.Module) -> Iterator[tuple[ast.AST, Scope]]:
    """Every node, with the scope its names are looked up in."""
    pending: list[tuple[ast.AST, Scope]] = [(tree, (0, "top"))]
    while pending:
        node, scope = pending.pop()
        yield node, scope
        parts = _scope_parts(node)
        if parts is None:
            pending.extend((child, scope) for child in ast.iter_child_nodes(node))
        else:
            key, inside, outside = parts
            pending.extend([(child, key) for child in inside] + [(child, scope) for child in outside])


def _builtin_scopes(table: symtable.SymbolTable) -> dict[Scope, set[str]]:
    """Per scope, the SHADOWABLE names used there that mean the builtin (or a module global).

    Only in a function is a name safe: a parameter or local there (or in an enclosing function) is never
    looked up in the builtins. At module or class level a `del` brings the builtin back."""
    found: dict[Scope, set[str]] = {}
    pending = [table]
    while pending:
        table = pending.pop()
        pending.extend(table.get_children())
        in_function = table.get_type() == "function"
        for symbol in table.get_symbols():
            local = in_function and (symbol.is_local() or symbol.is_free())
            if symbol.get_name() in SHADOWABLE and symbol.is_referenced() and not local:
                found.setdefault((table.get_lineno(), table.get_name()), set()).add(symbol.get_name())
    return found


def _is_compile(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "compile"


def _compile_call_problem(call: ast.Call) -> str:
    """Why a call of `x.compile(...)` is not one of the accepted forms; '' when it is."""
    if len(call.args) > 1 or any(isinstance(arg, ast.Starred) for arg in call.args):
        return f"torch.compile takes the function alone ({COMPILE_FORMS})"
    for keyword in call.keywords:
        allowed = COMPILE_KEYWORDS.get(keyword.arg or "")
        if allowed is None:
            given = f"{keyword.arg}=" if keyword.arg else "**"
            return f"torch.compile({given}...) is not allowed: it can choose code to run ({COMPILE_FORMS})"
        value = keyword.value
        if not (
            isinstance(value, ast.Constant)
            and any(type(value.value) is type(a) and value.value == a for a in allowed)
        ):
            choices = ", ".join(repr(a) for a in allowed)
            return f"torch.compile's {keyword.arg}= must be a constant: one of {choices}"
    return ""


def _compile_problems(tree: ast.Module) -> tuple[set[int], list[Problem]]:
    """The `.compile` attributes used in an accepted form (by id), and what is wrong with other calls."""
    accepted: set[int] = set()
    problems: list[Problem] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            accepted.update(id(d) for d in node.decorator_list if _is_compile(d))
        elif isinstance(node, ast.Call) and _is_compile(node.func):
            accepted.add(id(node.func))  # judged here, as a call
            if problem := _compile_call_problem(node):
                problems.append((_where(node), problem))
    return accepted, problems


def _name_problems(tree: ast.Module, table: symtable.SymbolTable) -> Iterator[Problem]:
    torch_names = {"torch"} | {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "torch" and alias.asname
    }
    compile_ok, compile_problems = _compile_problems(tree)
    yield from compile_problems
    builtins_in = _builtin_scopes(table)
    for node, scope in _scoped_walk(tree):
        if isinstance(node, ast.Name) and node.id in BANNED_DUNDERS:
            yield _where(node), f"access to {node.id!r} is not allowed"
        elif isinstance(node, ast.Name) and node.id in BANNED_NAMES:
            if node.id in SHADOWABLE and node.id not in builtins_in.get(scope, ()):
                continue  # a function's own variable of that name, never the builtin
            builtins_in.get(scope, set()).discard(node.id)
            yield _where(node), f"use of {node.id!r} is not allowed ({BANNED_NAMES[node.id]})"
        elif isinstance(node, ast.Attribute):
            if node.attr in BANNED_DUNDERS:
                yield _where(node), f"access to {node.attr!r} is not allowed"
            elif _is_compile(node) and id(node) not in compile_ok:
                yield _where(node), f"this use of torch.compile is not allowed ({COMPILE_FORMS})"
            elif node.attr in BANNED_NAMES and node.attr not in {"compile", "input", "open"}:
                yield (
                    _where(node),
                    f"use of {node.attr!r} is not allowed ({BANNED_NAMES[node.attr]})",
                )
            elif node.attr in BANNED_TORCH_ATTRIBUTES and _root_name(node.value) in torch_names:
                yield (
                    _where(node),
                    f"torch.{node.attr} is not allowed ({BANNED_TORCH_ATTRIBUTES[node.attr]})",
                )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in BANNED_DUNDERS:
            yield _where(node), f"the string {node.value!r} is not allowed"
    # The decision is symtable's; a use this walk placed in another scope is still reported, at its scope.
    for (line, _), names in builtins_in.items():
        for name in sorted(names):
            yield (max(line, 1), 0), f"use of {name!r} is not allowed ({BANNED_NAMES[name]})"


def _class_problem(tree: ast.Module, class_name: str) -> tuple[int, str] | None:
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    if any(node.name == class_name for node in classes):
        return None
    found = ", ".join(node.name for node in classes) or "none"
    return 0, f"class {class_name!r} is not defined at module level (classes found: {found})"


def _symbol_table(source: str) -> symtable.SymbolTable:
    """The compiler's scopes; it also rejects what parses but cannot compile (`nonlocal` at module level)."""
    try:
        return symtable.symtable(source, "candidate.py", "exec")
    except SyntaxError as exc:
        line = exc.lineno or 0
        raise SourceError(f"line {line}: syntax error: {exc.msg}", line) from None


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
        table = _symbol_table(source)
    except SourceError as exc:
        results.append(StaticCheck("static.parse", False, exc.reason, exc.line))
        return results
    results.append(StaticCheck("static.parse", True))
    for name, problems in (
        ("static.imports", list(_import_problems(tree))),
        ("static.banned", list(_name_problems(tree, table))),
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
