"""The part of MongoDB's query language the embedded store answers, evaluated in Python.

Exactly what the analyst's queries use (`repository.py`, `cognition.py`): equality, `$ne` and `$in` on
top-level fields, where a field holding an array matches when any element does (MongoDB's rule, which
`parent_ids` relies on); sorting on top-level fields in MongoDB's order across types (null < numbers <
strings < booleans < dates); skip and limit are the caller's slicing. Anything else raises
`UnsupportedQuery` naming the construct, so a new query fails loudly in the tests rather than being
answered differently from MongoDB.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
OPERATORS = ("$ne", "$in")
# MongoDB's comparison order of BSON types; a missing field sorts and compares as null.
_RANKS: tuple[tuple[type, int], ...] = ((bool, 8), (int, 2), (float, 2), (str, 3), (datetime, 9))


class UnsupportedQuery(ValueError):
    """A query or sort outside the subset the embedded store answers (see the module docstring)."""


def _rank(value: Any) -> int:
    if value is None:
        return 1
    for kind, rank in _RANKS:  # bool before int: True is an int in Python but not in BSON
        if isinstance(value, kind):
            return rank
    raise UnsupportedQuery(f"the embedded store does not compare values of type {type(value).__name__}")


def _equal(value: Any, target: Any) -> bool:
    """MongoDB equality: an array field matches a scalar target when any element equals it."""
    if isinstance(value, list):
        return any(_equal(element, target) for element in value)
    return _rank(value) == _rank(target) and value == target


def _field(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith("$") or "." in name:
        raise UnsupportedQuery(f"the embedded store filters and sorts on top-level fields only, not {name!r}")
    return name


def _condition(condition: Any) -> Callable[[Any], bool]:
    if isinstance(condition, Mapping):
        unknown = [key for key in condition if key not in OPERATORS]
        if unknown or not condition:
            raise UnsupportedQuery(
                f"the embedded store supports only equality, {' and '.join(OPERATORS)}; got {unknown or '{}'}"
            )
        tests = [_operator(operator, argument) for operator, argument in condition.items()]
        return lambda value: all(test(value) for test in tests)
    _rank(condition)  # an unsupported target fails now, not on the first document
    return lambda value: _equal(value, condition)


def _operator(operator: str, argument: Any) -> Callable[[Any], bool]:
    if operator == "$ne":
        _rank(argument)
        return lambda value: not _equal(value, argument)
    if not isinstance(argument, list | tuple):
        raise UnsupportedQuery(f"$in takes a list, got {type(argument).__name__}")
    targets = list(argument)
    for target in targets:
        _rank(target)
    return lambda value: any(_equal(value, target) for target in targets)


def compile_filter(query: Mapping[str, Any]) -> Predicate:
    """A predicate on documents that holds where MongoDB's `find(query)` would match."""
    tests = [(_field(name), _condition(condition)) for name, condition in query.items()]
    return lambda document: all(test(document.get(name)) for name, test in tests)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, list):
        raise UnsupportedQuery("the embedded store does not sort on array fields")
    return _rank(value), (0 if value is None else value)


def sort_documents(
    documents: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, int]]
) -> list[Mapping[str, Any]]:
    """The documents in the order of MongoDB's `sort(keys)` (1 ascending, -1 descending)."""
    ordered = list(documents)
    # Python's sort is stable, also when reversed: sorting by the last key first gives the compound order.
    for name, direction in reversed(list(keys)):
        if direction not in (1, -1):
            raise UnsupportedQuery(f"sort direction of {name!r} must be 1 or -1, got {direction!r}")
        field = _field(name)
        ordered.sort(key=lambda document: _sort_key(document.get(field)), reverse=direction == -1)
    return ordered


def fields(query: Mapping[str, Any], keys: Sequence[tuple[str, int]] = ()) -> set[str]:
    """The top-level fields a query and a sort read."""
    return {str(name) for name in query} | {str(name) for name, _ in keys}
