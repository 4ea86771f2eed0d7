"""The contract ASI-Arch-style layers run under (issue 17): torch.compile and TYPE_CHECKING imports.

The static side is in test_static_checks; here the loader and the sandboxed worker: torch.compile is an
identity on CPU and says so, keywords that choose code are refused at run time too, and imports under
`if TYPE_CHECKING:` never run, even when a layer manages to make the flag true.
"""

from __future__ import annotations

import asyncio
import typing
from typing import Any

import pytest
import torch
from asi_arch_style import PROGRAM_FP32, PROGRAM_FUTURE
from layers import GOOD, SANDBOX_BUDGET, layer
from torch import nn

from asiarch.engineer.candidate import CompileShim, load_layer
from asiarch.engineer.sandbox import SandboxLimits, SandboxResult, run_in_sandbox
from asiarch.engineer.static_checks import run_static_checks

BUDGET = SANDBOX_BUDGET.to_json()  # the job's JSON form

# A layer that makes typing.TYPE_CHECKING true for its guard through a gadget the static checks cannot
# see (update_wrapper sets attributes by name; it is set back after, as torch's own lazy imports need
# it false), and imports a module that does not exist under the guard: if the guarded import ever ran,
# loading would fail with ModuleNotFoundError.
FLIPPED_FLAG = """
import functools
import typing


def set_flag(value):
    holder = type("Holder", (), {"TYPE_CHECKING": value})
    functools.update_wrapper(typing, holder, assigned=("TYPE_CHECKING",), updated=())


set_flag(True)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asiarch_no_such_module
set_flag(False)
"""


def run(source: str) -> SandboxResult:
    job = {"kind": "check", "source": source, "class_name": "DeltaNet", "budget": BUDGET}
    return asyncio.run(run_in_sandbox(job, SandboxLimits(wall_seconds=120.0)))


def checks_of(result: SandboxResult) -> dict[str, dict[str, Any]]:
    assert result.outcome == "ok", result.error
    assert result.result is not None
    return {check["name"]: check for check in result.result["checks"]}


def kernel(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class FakeCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA: the shim's device test, without a GPU."""

    is_cuda = True


def test_on_a_cpu_budget_torch_compile_is_an_identity_and_says_so() -> None:
    shim = CompileShim("cpu")
    module = nn.Linear(2, 2)
    assert shim(kernel) is kernel
    assert shim(mode="max-autotune", fullgraph=True)(kernel) is kernel
    assert shim(module) is module
    report = shim.report()
    assert report is not None and report["passed"]
    assert report["message"].startswith("torch.compile: identity on CPU")
    assert report["measurements"] == {"functions": 3.0, "compiled": 0.0}


def test_without_torch_compile_there_is_nothing_to_report() -> None:
    assert CompileShim("cpu").report() is None


@pytest.mark.parametrize("options", [{"backend": "eager"}, {"options": {"cpp.cxx": "sh"}}, {"disable": True}])
def test_the_shim_refuses_the_keywords_that_choose_code_to_run(options: dict[str, Any]) -> None:
    # The static checks reject these; the shim is the same rule where the code runs.
    with pytest.raises(TypeError, match="accepts only mode=, fullgraph=, dynamic="):
        CompileShim("cpu")(kernel, **options)
    with pytest.raises(TypeError, match="accepts only"):
        CompileShim("cuda")(**options)


def test_on_a_cuda_budget_only_calls_with_cuda_tensors_are_compiled() -> None:
    compiled: list[tuple[Any, dict[str, Any]]] = []

    def fake_compile(fn: Any, **options: Any) -> Any:
        compiled.append((fn, options))
        return lambda *args, **kwargs: ("compiled", fn(*args, **kwargs))

    shim = CompileShim("cuda", compile_fn=fake_compile)
    fast = shim(mode="max-autotune")(kernel)
    assert torch.equal(fast(torch.ones(2)), torch.full((2,), 2.0))  # the functional checks' CPU tensors
    assert compiled == []
    on_gpu = torch.ones(2).as_subclass(FakeCuda)
    assert fast(x=on_gpu)[0] == "compiled"
    assert fast(on_gpu)[0] == "compiled"
    assert compiled == [(kernel, {"mode": "max-autotune"})]  # compiled once, lazily, with its options
    report = shim.report()
    assert report is not None and "compiled on CUDA" in report["message"]
    assert "compile_seconds" in report["message"]


def test_imports_under_type_checking_never_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(typing, "TYPE_CHECKING", True)  # what a layer could do; restored afterwards
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asiarch_no_such_module\n" + GOOD
    assert issubclass(load_layer(source, "DeltaNet"), nn.Module)


def test_a_layer_that_flips_type_checking_still_never_runs_the_guarded_import() -> None:
    source = layer(prelude=FLIPPED_FLAG)
    assert all(check.passed for check in run_static_checks(source))  # the checks cannot see the flip
    checks = checks_of(run(source))
    assert all(check["passed"] for check in checks.values()), checks


def test_an_asi_arch_style_layer_passes_the_functional_checks_with_compile_as_identity() -> None:
    checks = checks_of(run(PROGRAM_FP32))
    assert all(check["passed"] for check in checks.values()), checks
    note = checks["functional.torch_compile"]
    assert note["message"].startswith("torch.compile: identity on CPU")
    assert note["measurements"]["functions"] == 1.0


def test_an_asi_arch_style_layer_that_reads_the_next_token_is_still_rejected() -> None:
    source = PROGRAM_FUTURE.replace("    attn = attn.to(torch.bfloat16)\n", "")
    checks = checks_of(run(source))
    assert not checks["functional.causality"]["passed"]
    assert "future tokens" in checks["functional.causality"]["message"]


def test_a_compile_backend_is_refused_in_the_sandbox_too() -> None:
    # The sandbox runs code without the static checks in front: the shim itself refuses.
    result = run(layer(init='self.fast = torch.compile(lambda x: x, backend="eager")'))
    assert result.outcome == "error"
    assert "TypeError: torch.compile accepts only mode=, fullgraph=, dynamic= in the sandbox" in result.error
