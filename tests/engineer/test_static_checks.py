"""Static checks: each failure names what is wrong and where."""

from __future__ import annotations

import pytest

from asiarch.engineer.static_checks import run_static_checks

GOOD = """
from __future__ import annotations
import math
from typing import Optional
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from asiarch.kernels import chunk_delta_rule
from fla.modules import ShortConvolution


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 64, num_heads: int = 4, **kwargs) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.proj(hidden_states) * math.sqrt(2.0)
"""


def failure(source: str, class_name: str = "DeltaNet") -> tuple[str, str, int]:
    results = run_static_checks(source, class_name)
    failed = [r for r in results if not r.passed]
    assert len(failed) == 1, results
    return failed[0].name, failed[0].message, failed[0].line


def test_a_good_layer_passes_every_check() -> None:
    results = run_static_checks(GOOD)
    assert [r.name for r in results] == [
        "static.size",
        "static.parse",
        "static.imports",
        "static.banned",
        "static.class",
    ]
    assert all(r.passed for r in results)


def test_size_cap() -> None:
    name, message, _ = failure(GOOD + "#" * 70_000)
    assert name == "static.size"
    assert "limit is 65536" in message


def test_syntax_error_has_its_line() -> None:
    name, message, line = failure("import torch\nclass DeltaNet(:\n    pass\n")
    assert (name, line) == ("static.parse", 2)
    assert message.startswith("line 2: syntax error")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # Each fits under the 64 KiB cap; Python's parser answers the first two with RecursionError and
        # MemoryError, and the last parses but is too deep for the checks' own walk of the tree.
        ("y = torch" + ".a" * 5000, "nested too deeply to parse"),
        ("x = " + "-" * 30000 + "1", "nested too deeply to parse"),
        ("x = 1" + " + 1" * 2000, "line 1: nested more than 100 levels deep"),
        ("x = 1\x00", "null bytes"),
    ],
)
def test_sources_nested_too_deeply_fail_the_parse_check(source: str, reason: str) -> None:
    name, message, _ = failure(source)
    assert name == "static.parse"
    assert reason in message


def test_a_deep_but_ordinary_layer_still_passes() -> None:
    deep = GOOD + "\n\nscale = " + "(" * 60 + "1" + " + 1)" * 60 + "\n"
    assert all(r.passed for r in run_static_checks(deep))


@pytest.mark.parametrize(
    ("line", "module"),
    [
        ("import os", "os"),
        ("import subprocess", "subprocess"),
        ("from socket import socket", "socket"),
        ("import numpy as np", "numpy"),
        ("import torch.hub", "torch.hub"),
        ("from torch.utils.cpp_extension import load_inline", "torch.utils.cpp_extension"),
        ("from torch import multiprocessing", "torch.multiprocessing"),
    ],
)
def test_imports_outside_the_allow_list(line: str, module: str) -> None:
    name, message, lineno = failure(f"import torch\n{line}\n" + GOOD)
    assert name == "static.imports"
    assert lineno == 2
    assert f"import of {module!r} is not allowed" in message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("x = eval('1')", "'eval'"),
        ("exec('import os')", "'exec'"),
        ("f = open('/etc/passwd')", "'open'"),
        ("m = __import__('os')", "'__import__'"),
        ("g = getattr(torch, 'lo' + 'ad')", "'getattr'"),
        ("s = torch.load('x.pt')", "torch.load"),
        ("torch.save({}, 'x.pt')", "torch.save"),
        ("c = ().__class__.__bases__[0].__subclasses__()", "'__class__'"),
        ("b = torch.nn.Module.__dict__", "'__dict__'"),
        ("k = torch.compile", "torch.compile"),
        ("o = torch.os", "'os'"),
    ],
)
def test_banned_names_and_attributes(code: str, expected: str) -> None:
    name, message, line = failure(GOOD + "\n" + code + "\n")
    assert name == "static.banned"
    assert line == GOOD.count("\n") + 2
    assert expected in message


def test_the_class_must_exist() -> None:
    name, message, _ = failure(GOOD.replace("class DeltaNet", "class MyLayer"))
    assert name == "static.class"
    assert "'DeltaNet' is not defined" in message
    assert "MyLayer" in message


def test_the_class_name_is_configurable() -> None:
    assert all(r.passed for r in run_static_checks(GOOD.replace("DeltaNet", "MyLayer"), "MyLayer"))
