"""Rules every request field obeys, in every service, checked before a handler sees the request.

Two rules hold for every message of the contract, however deeply nested: a float or double is finite
(no NaN, no infinity), and an enum holds one of its defined values (proto3 lets a client send any
number; an undefined one would otherwise be read as "unspecified" or fail deep inside a handler). A
request that breaks either is INVALID_ARGUMENT naming the field's path, e.g. `budget.learning_rate` or
`parent.evaluation.checks[2].stage`. Every server applies both to every request as it arrives, in
one place (`asiarch.common.interceptors`, right after decoding it). `short` is how a message quotes
a client's string (a bounded prefix, never the whole value). Rules that belong to one field (ranges,
formats) stay with the service that owns the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from asiarch.common.errors import InvalidArgument

SHOWN_CHARS = 80
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def short(value: str, limit: int = SHOWN_CHARS) -> str:
    """The value quoted for an error message: its first `limit` characters, marked when cut."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r} (first {limit} of {len(value)} characters)"


def _scalar_problem(field: FieldDescriptor, value: Any, path: str) -> str | None:
    if field.type in _FLOATS and not math.isfinite(value):
        return f"{path} is NaN or infinite ({value}); numbers must be finite"
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum: EnumDescriptor = field.enum_type
        if value not in enum.values_by_number:
            valid = ", ".join(v.name for v in enum.values)
            return f"{path} {value} is not a defined {enum.name} (one of {valid})"
    return None


def _entries(field: FieldDescriptor, value: Any, path: str) -> Iterator[tuple[FieldDescriptor, Any, str]]:
    """(descriptor, value, path) of each element of a set field: itself, a list's items or a map's values."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        for key in sorted(value):
            yield value_field, value[key], f"{path}[{key!r}]"
    elif field.is_repeated:
        for i, item in enumerate(value):
            yield field, item, f"{path}[{i}]"
    else:
        yield field, value, path


def field_problem(message: Message, path: str = "") -> str | None:
    """What is wrong with a field breaking a rule above (a message's own fields before its submessages'),
    else None."""
    pending: list[tuple[Message, str]] = [(message, path)]
    while pending:
        current, prefix = pending.pop()
        nested: list[tuple[Message, str]] = []
        for field, value in current.ListFields():
            for element, item, where in _entries(field, value, f"{prefix}.{field.name}".lstrip(".")):
                if element.type == FieldDescriptor.TYPE_MESSAGE:
                    nested.append((item, where))
                elif problem := _scalar_problem(element, item, where):
                    return problem
        pending.extend(reversed(nested))
    return None


def check_fields(message: Message, path: str = "") -> None:
    """InvalidArgument naming the first field that holds a non-finite number or an undefined enum value."""
    if problem := field_problem(message, path):
        raise InvalidArgument(problem)
