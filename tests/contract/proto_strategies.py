"""Hypothesis strategies for any message of the contract, built from its descriptor.

`requests(descriptor, bases)` draws messages whose fields have the right types, either from nothing or
by replacing a field or two, anywhere, in a known-good request (so a draw gets past the first check
into the handler). Half the draws are "clean" (finite numbers, defined enum values); the other half mix
in hostile values: NaN, infinities, extreme and negative numbers, undefined enum numbers. Strings are
odd in both (empty, control characters, right-to-left marks, long, sources that nest deeply), and
fields are recognised by name to get values handlers look for (ids, page tokens, devices, DSL specs,
strategy names).
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from asiarch.researcher.dsl import DELTANET

MAX_DEPTH = 4  # a request's submessages this deep get scalar fields only
LIST_SIZE = {0: 3, 1: 2}  # items in a repeated field, by depth; 1 deeper down

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)

HOSTILE_FLOATS = [float("nan"), float("inf"), float("-inf")]
EDGE_FLOATS = [0.0, -0.0, -1.0, 1e308, -1e308, 5e-324, 2.0**53 + 1, 1e-300]
UNDEFINED_ENUMS = [99, -1, 2**31 - 1, -(2**31)]

DEEP_SOURCES = [
    "y = torch" + ".a" * 5000,
    "x = " + "-" * 30000 + "1",
    "x = 1" + " + 1" * 2000,
    "x = " + "[" * 150 + "]" * 150,
    "class DeltaNet(:\n",
    "import os\nos.system('true')\n",
    "x = 1\x00",
]


def _token(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _spec_variants() -> list[str]:
    """The deltanet spec with one setting out of its range: NaN, 1e400, a huge or negative number."""
    spec = json.loads(DELTANET.model_dump_json())
    variants = []
    for key, value in [
        ("key_expand", "NaN"),
        ("value_expand", "1e400"),
        ("chunk_size", "-1"),
        ("head_multiplier", str(2**70)),
        ("conv_sizes", json.dumps([4] * 10_000)),
    ]:
        text = json.dumps({**spec, key: "@"})
        variants.append(text.replace('"@"', value))
    return variants


ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "\u202e\u0000\ufeff",
    "e\u0301" * 40,
    "😀" * 30,
    "../../etc/passwd",
    "{0}{1}%s%n{{}}",
    "\r\n" * 50,
    "x" * 70_000,
]
BY_NAME: dict[str, list[str]] = {
    "id": ["e1", "deltanet", "run-1", "a" * 129, "a b", "Bad Id", "x:y.z-_"],
    "module_source": DEEP_SOURCES,
    "class_name": ["DeltaNet", "1abc", "class", "A" * 5000],
    "spec_json": [
        DELTANET.model_dump_json(),
        "{}",
        "[" * 10_000,
        '{"mixer": 1}',
        json.dumps([1] * 1000),
        *_spec_variants(),
    ],
    "page_token": [
        _token('{"o": Infinity, "q": "x"}'),
        _token('{"o": 1e400, "q": "x"}'),
        _token('{"o": -1, "q": "x"}'),
        _token("[" * 5000),
        "garbage!",
    ],
    "device": ["cpu", "cuda", "cuda:0", "cuda:abc", "cuda:" + "9" * 30, "tpu"],
    "strategy": ["asi-arch", "uct", "hgm", "lexicase", "pareto", "random", "nope"],
    "objectives": ["val_loss", "mqar", "parameters", "tokens_per_second", "nope"],
    "name": ["deltanet", "gated-deltanet", "linear-attention", "softmax-attention", "n" * 65],
}
_ALIASES = {"run_id": "id", "experiment_id": "id", "parent_id": "id", "parent_ids": "id", "against_id": "id"}


def _strings(field: FieldDescriptor) -> st.SearchStrategy[str]:
    key = _ALIASES.get(field.name, field.name)
    if key not in BY_NAME and field.name.endswith("_id"):
        key = "id"
    odd = st.one_of(st.sampled_from(ODD_STRINGS), st.text(max_size=40))
    return st.one_of(st.sampled_from(BY_NAME[key]), odd) if key in BY_NAME else odd


def _scalar(field: FieldDescriptor, hostile: bool) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in FLOATS:
        plain = st.floats(allow_nan=False, allow_infinity=False)  # the contract has doubles only
        edges = EDGE_FLOATS + (HOSTILE_FLOATS if hostile else [])
        return st.one_of(plain, st.sampled_from(edges))
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, 1, 2, 3]))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings(field)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_ENUM:
        defined = st.sampled_from([v.number for v in field.enum_type.values])
        return st.one_of(defined, st.sampled_from(UNDEFINED_ENUMS)) if hostile else defined
    raise TypeError(f"no strategy for field {field.full_name} of type {kind}")


def _value(field: FieldDescriptor, depth: int, hostile: bool) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        keys = _scalar(field.message_type.fields_by_name["key"], hostile)
        values = _value(field.message_type.fields_by_name["value"], depth + 1, hostile)
        return st.dictionaries(keys, values, max_size=LIST_SIZE.get(depth, 1))
    single = (
        messages(field.message_type, depth + 1, hostile)
        if field.type == FieldDescriptor.TYPE_MESSAGE
        else _scalar(field, hostile)
    )
    if field.is_repeated:
        return st.lists(single, max_size=LIST_SIZE.get(depth, 1))
    return single


def _build_into(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        _build_into(message, descriptor.fields_by_name[name], value)
    return message


@functools.cache
def messages(descriptor: Descriptor, depth: int = 0, hostile: bool = False) -> st.SearchStrategy[Message]:
    """Messages of this type; each field set or left unset, submessages down to MAX_DEPTH."""
    fields = {
        field.name: _value(field, depth, hostile)
        for field in descriptor.fields
        if depth < MAX_DEPTH or field.type != FieldDescriptor.TYPE_MESSAGE
    }
    return st.fixed_dictionaries({}, optional=fields).map(functools.partial(_build, descriptor))


def _slots(message: Message, depth: int = 0) -> list[tuple[Message, FieldDescriptor, int]]:
    """(message, field, depth) for every field of the message and of each submessage it holds."""
    found = [(message, field, depth) for field in message.DESCRIPTOR.fields]
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
            for item in value if field.is_repeated else [value]:
                found += _slots(item, depth + 1)
    return found


def _replace(message: Message, field: FieldDescriptor, value: Any) -> None:
    message.ClearField(field.name)
    _build_into(message, field, value)


def _hostile(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    single = st.sampled_from(HOSTILE_FLOATS if field.type in FLOATS else UNDEFINED_ENUMS)
    return st.lists(single, min_size=1, max_size=2) if field.is_repeated else single


@st.composite
def mutations(draw: st.DrawFn, base: Message, hostile: bool) -> Message:
    """The base request with one or two fields, anywhere in it, replaced by drawn values; when hostile,
    exactly one number or enum replaced by a NaN, an infinity or an undefined value instead."""
    message = type(base)()
    message.CopyFrom(base)
    if hostile:
        numbers = [s for s in _slots(message) if s[1].type in (*FLOATS, FieldDescriptor.TYPE_ENUM)]
        target, field, _ = draw(st.sampled_from(numbers))
        _replace(target, field, draw(_hostile(field)))
        return message
    for _ in range(draw(st.integers(1, 2))):
        target, field, depth = draw(st.sampled_from(_slots(message)))
        _replace(target, field, draw(_value(field, depth, hostile)))
    return message


def _has_numbers(message: Message) -> bool:
    return any(s[1].type in (*FLOATS, FieldDescriptor.TYPE_ENUM) for s in _slots(message))


def requests(descriptor: Descriptor, bases: list[Message]) -> st.SearchStrategy[Message]:
    """Requests of this type: drawn from nothing, or a known-good request with a field or two replaced;
    clean and hostile alike."""
    drawn = [messages(descriptor, 0, False), messages(descriptor, 0, True)]
    mutated = [mutations(base, False) for base in bases]
    mutated += [mutations(base, True) for base in bases if _has_numbers(base)]
    return st.one_of(*drawn, *mutated)
