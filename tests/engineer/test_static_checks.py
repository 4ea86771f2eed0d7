"""Static checks: each failure names what is wrong and where."""

from __future__ import annotations

import pytest
from asi_arch_style import PROGRAM

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


# --- What ASI-Arch's published layers need (issue 17), and the threats each relaxed rule still stops.


def test_a_layer_in_asi_arch_style_passes_every_static_check() -> None:
    # @torch.compile on the kernel, `if TYPE_CHECKING:` importing transformers, a parameter named input.
    assert all(r.passed for r in run_static_checks(PROGRAM)), run_static_checks(PROGRAM)


FLAG = "from typing import TYPE_CHECKING\n"


def problems(code: str) -> list[str]:
    return [f"{r.name}: {r.message}" for r in run_static_checks(GOOD + "\n" + code + "\n") if not r.passed]


@pytest.mark.parametrize(
    "code",
    [
        "@torch.compile\ndef kernel(x):\n    return x * 2",
        "@torch.compile()\ndef kernel(x):\n    return x * 2",
        '@torch.compile(mode="max-autotune", fullgraph=True, dynamic=False)\ndef kernel(x):\n    return x',
        "def kernel(x):\n    return x\n\nfast = torch.compile(kernel)",
        'fast = torch.compile(lambda x: x, mode="reduce-overhead", dynamic=None)',
    ],
)
def test_torch_compile_is_accepted_as_a_decorator_or_a_plain_call(code: str) -> None:
    assert problems(code) == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # A backend is any callable (or a registered name): it gets the graph and runs whatever it likes.
        ('f = torch.compile(lambda x: x, backend="inductor")', "backend=...) is not allowed"),
        ("f = torch.compile(lambda x: x, backend=lambda gm, inputs: gm)", "backend=...) is not allowed"),
        # options can name the C++ compiler inductor spawns.
        ('f = torch.compile(lambda x: x, options={"cpp.cxx": ("sh", "-c", "id")})', "options=...) is not"),
        ('@torch.compile(backend="eager")\ndef k(x):\n    return x', "backend=...) is not allowed"),
        ('kw = {"backend": "eager"}\nf = torch.compile(lambda x: x, **kw)', "torch.compile(**...) is not"),
        ('m = "max-autotune"\nf = torch.compile(lambda x: x, mode=m)', "mode= must be a constant"),
        ('f = torch.compile(lambda x: x, mode="evil")', "mode= must be a constant"),
        ("f = torch.compile(lambda x: x, fullgraph=1)", "fullgraph= must be a constant"),
        ("f = torch.compile(lambda x: x, None)", "takes the function alone"),
        ("args = []\nf = torch.compile(*args)", "takes the function alone"),
        # Anything but a call or a function's decorator hands the real thing around.
        ("c = torch.compile", "this use of torch.compile is not allowed"),
        ('p = functools.partial(torch.compile, backend="eager")', "this use of torch.compile is not allowed"),
        ("@torch.compile\nclass Fast(nn.Module):\n    pass", "this use of torch.compile is not allowed"),
        ("from torch import compile", "'from torch import compile' is not allowed"),
        ("from torch import compile as fast", "'from torch import compile' is not allowed"),
        # Other ways to the same compiler: an alias of torch, Module.compile, torch.compiler, its internals.
        ('import torch as T\nf = T.compile(lambda x: x, backend="eager")', "backend=...) is not allowed"),
        ('nn.Linear(2, 2).compile(backend="eager")', "backend=...) is not allowed"),
        ('f = torch.compiler.compile(lambda x: x, backend="eager")', "backend=...) is not allowed"),
        ('torch._inductor.config.cpp.cxx = ("sh",)', "torch._inductor is not allowed"),
        ("import torch._dynamo", "import of 'torch._dynamo' is not allowed"),
        ("from torch._inductor import config", "import of 'torch._inductor' is not allowed"),
        ("c = compile('1', 'x', 'eval')", "use of 'compile' is not allowed"),
    ],
)
def test_every_other_use_of_torch_compile_is_rejected(code: str, expected: str) -> None:
    found = problems(code)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    "code",
    [
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from transformers.processing_utils import Unpack\n    from fla.models.utils import Cache",
        "import typing\nif typing.TYPE_CHECKING:\n    from transformers.processing_utils import Unpack",
        # Never executed, whatever it names: the loader removes it too (test_asi_arch_contract).
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import os",
        FLAG + "\ndef f():\n    if TYPE_CHECKING:\n        import numpy\n    return 1",
    ],
)
def test_imports_under_type_checking_are_not_checked(code: str) -> None:
    assert problems(code) == []


@pytest.mark.parametrize(
    "code",
    [
        # The flag rebound, anywhere and in any way, is not typing's False any more.
        "from typing import TYPE_CHECKING\nTYPE_CHECKING = True\nif TYPE_CHECKING:\n    import os",
        "from typing import TYPE_CHECKING\nif (TYPE_CHECKING := True):\n    import os",
        FLAG + "for TYPE_CHECKING in [1]:\n    pass\nif TYPE_CHECKING:\n    import os",
        FLAG + "\ndef f(TYPE_CHECKING=True):\n    if TYPE_CHECKING:\n        import os",
        FLAG + "\nclass A:\n    TYPE_CHECKING = 1\n    if TYPE_CHECKING:\n        import os",
        "import typing\ntyping.TYPE_CHECKING = True\n" + FLAG + "if TYPE_CHECKING:\n    import os",
        "import typing\ntyping.TYPE_CHECKING = True\nif typing.TYPE_CHECKING:\n    import os",
        "from typing import TYPE_CHECKING\nfrom torch import *\nif TYPE_CHECKING:\n    import os",
        "TYPE_CHECKING = True\nif TYPE_CHECKING:\n    import os",
        # Aliases (harmless as such, but not the one form accepted).
        "from typing import TYPE_CHECKING as T\nif T:\n    import os",
        "import typing as t\nif t.TYPE_CHECKING:\n    import os",
        "from typing import TYPE_CHECKING as TC\nTYPE_CHECKING = TC\nif TYPE_CHECKING:\n    import os",
        # The branches that do run.
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    import os",
        "from typing import TYPE_CHECKING\nif not TYPE_CHECKING:\n    import os",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING or True:\n    import os",
        # Only imports directly in the block are exempt.
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    if True:\n        import os",
        # The flag imported in a function is not the module's.
        "def f():\n    from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import os",
    ],
)
def test_type_checking_tricks_are_still_rejected(code: str) -> None:
    found = problems(code)
    assert found and found[0].startswith("static.imports: ") and "'os'" in found[0], found


def test_code_under_type_checking_is_still_checked_for_banned_names() -> None:
    found = problems(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import os\n    os.system('id')"
    )
    assert found and "use of 'os' is not allowed" in found[0], found


@pytest.mark.parametrize(
    "code",
    [
        "def _make_ix_like(input, dim=0):\n    return torch.arange(input.size(dim), dtype=input.dtype)",
        "def f(x):\n    input = x + 1\n    return input",
        "def f(input):\n    def g():\n        return input.sum()\n    return g()",
        "def f(xs):\n    return [input * 2 for input in xs]",
        "scale = lambda input: input * 2",
        "def f(x, **kwargs):\n    return x.input + kwargs.get('input', 0)",
        "def f(open, compile):\n    return open + compile",
    ],
)
def test_a_builtins_name_as_a_functions_own_variable_is_allowed(code: str) -> None:
    assert problems(code) == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("x = input()", "'input'"),
        ("def f(x):\n    return input()", "'input'"),
        ("def f(x=input):\n    return x()", "'input'"),  # a default is evaluated outside the function
        ("def f(input=input):\n    return input()", "'input'"),
        ("f = lambda: input()", "'input'"),
        ("xs = [input() for _ in range(1)]", "'input'"),
        ("def f():\n    global input\n    input = 1\n    return input", "'input'"),
        ("def f(input):\n    def g():\n        global input\n        return input()", "'input'"),
        ("class A:\n    input = 1\n    del input\n    x = input()", "'input'"),
        ("input = 1\n\ndef f():\n    return input", "'input'"),
        ("import builtins\nx = builtins.input()", "import of 'builtins' is not allowed"),
        ('x = getattr(builtins, "input")()', "'getattr'"),
        ('x = __builtins__["input"]()', "'__builtins__'"),
        ("x = __builtins__.input()", "'__builtins__'"),
        ("x = len.__self__.input()", "'__self__'"),
        ("x = open('/etc/passwd')", "'open'"),
    ],
)
def test_the_builtins_themselves_stay_banned(code: str, expected: str) -> None:
    found = problems(code)
    assert len(found) == 1 and expected in found[0], found


def test_a_builtin_input_is_reported_at_its_line() -> None:
    code = "def f(input):\n    return input\n\n\ndef g(x):\n    return input()"
    name, message, line = failure(GOOD + "\n" + code + "\n")
    assert (name, line) == ("static.banned", GOOD.count("\n") + 7)
    assert "use of 'input' is not allowed (reading stdin)" in message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import torch as T\nx = T.load('x.pt')", "torch.load is not allowed"),
        ("from torch import load\nx = load('x.pt')", "'from torch import load' is not allowed"),
        ("from torch import save as keep", "'from torch import save' is not allowed"),
    ],
)
def test_torchs_banned_attributes_cannot_be_reached_by_another_name(code: str, expected: str) -> None:
    found = problems(code)
    assert len(found) == 1 and expected in found[0], found


def test_what_parses_but_cannot_compile_fails_the_parse_check() -> None:
    name, message, line = failure("import torch\nnonlocal x\n")
    assert (name, line) == ("static.parse", 2)
    assert "nonlocal declaration not allowed at module level" in message
