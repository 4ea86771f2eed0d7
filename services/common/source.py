"""Parsing candidate source safely: one place every service reads Python source with `ast`.

`parse_source` either returns a module tree that any later recursive walk of `ast` (dump, unparse,
compile) can handle, or raises `SourceError` with a one-line reason and the line when known. It never
lets Python's own limits escape as RecursionError or MemoryError (the parser's answers to deeply nested
code that fits in a few KiB, e.g. `"x = " + "-" * 30000 + "1"`), so a caller turns every unreadable
source into its own answer: a failed check for generated code, INVALID_ARGUMENT for a request field.
"""

from __future__ import annotations

import ast

# The deepest syntax tree accepted. Real layers nest far less (the baselines 10-13 levels, the DSL's
# renders at most 14, torch.nn's deepest module 22); ast.unparse and ast.dump recurse in Python about
# twice per level and fail near 500 levels of a plain `1+1+...`.
MAX_NESTING = 100


class SourceError(ValueError):
    """The source cannot be read as a Python module; `reason` says why, `line` is 1-based or 0."""

    def __init__(self, reason: str, line: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def nesting_depth(tree: ast.AST) -> int:
    """The depth of the deepest node (the root is depth 1), found without recursion."""
    deepest = 0
    pending = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _deepest_line(tree: ast.AST, limit: int) -> int:
    """The line of the first node found beyond `limit` (or of its nearest ancestor with a line)."""
    pending = [(tree, 1, 0)]
    while pending:
        node, depth, line = pending.pop()
        line = getattr(node, "lineno", line)
        if depth > limit:
            return line
        pending.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    return 0


def parse_source(source: str, max_nesting: int = MAX_NESTING) -> ast.Module:
    """The module's syntax tree; SourceError when it is not valid Python or nests too deeply."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        line = exc.lineno or 0
        raise SourceError(f"line {line}: syntax error: {exc.msg}", line) from None
    except ValueError as exc:  # e.g. null bytes, in the Python versions that do not call it a SyntaxError
        raise SourceError(f"not valid Python source: {exc}") from None
    except (RecursionError, MemoryError):
        raise SourceError(f"nested too deeply to parse (the limit is {max_nesting} levels)") from None
    if nesting_depth(tree) > max_nesting:
        line = _deepest_line(tree, max_nesting)
        raise SourceError(f"line {line}: nested more than {max_nesting} levels deep", line)
    return tree
