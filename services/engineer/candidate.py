"""Loading candidate source inside the sandbox (never in the service process).

Two parts of the contract candidates run under are settled here, before their code runs:
- `torch.compile` is a `CompileShim` (installed by the worker): an identity on a CPU budget, a real
  compile of the calls that get CUDA tensors on a CUDA budget, and only the keywords the static
  checks accept (`static_checks.COMPILE_KEYWORDS`); anything else raises TypeError.
- the imports directly under a trusted `if TYPE_CHECKING:` (`static_checks.type_checking_guards`),
  which the static checks do not check, are removed from the code before it runs: they never
  execute, even if typing.TYPE_CHECKING were made true.
"""

from __future__ import annotations

import ast
import functools
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from asiarch.engineer.static_checks import COMPILE_KEYWORDS, type_checking_guards

Check = dict[str, Any]


class CompileShim:
    """What `torch.compile` is in the sandbox.

    On a CPU budget an identity: the function runs as written. Inductor on CPU would need a C++ toolchain
    and compiler processes, and the functional checks must see the eager operations (causality through
    gradients, tensor sizes through a dispatch mode). On a CUDA budget the function is compiled for real,
    lazily, at its first call with a CUDA tensor (the training warm-up, timed as `compile_seconds`, apart
    from training); calls with CPU tensors only (the functional checks) stay eager.
    """

    def __init__(self, device: str, compile_fn: Callable[..., Any] = torch.compile) -> None:
        self.cuda = device.startswith("cuda")
        self.compile_fn = compile_fn
        self.functions = 0

    @classmethod
    def install(cls, device: str) -> CompileShim:
        shim = cls(device)
        torch.compile = shim  # type: ignore[assignment]
        return shim

    def __call__(self, model: Any = None, **options: Any) -> Any:
        if unknown := sorted(set(options) - set(COMPILE_KEYWORDS)):
            accepted = ", ".join(f"{k}=" for k in COMPILE_KEYWORDS)
            given = ", ".join(f"{k}=" for k in unknown)
            raise TypeError(f"torch.compile accepts only {accepted} in the sandbox, not {given}")
        if model is None:  # @torch.compile(mode=...)
            return functools.partial(self, **options)
        self.functions += 1
        if not self.cuda:
            return model
        if isinstance(model, nn.Module):
            model.forward = self._on_cuda(model.forward, options)
            return model
        return self._on_cuda(model, options)

    def _on_cuda(self, fn: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
        compiled: Callable[..., Any] | None = None

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            nonlocal compiled
            leaves = pytree.tree_leaves((args, kwargs))
            if not any(isinstance(leaf, torch.Tensor) and leaf.is_cuda for leaf in leaves):
                return fn(*args, **kwargs)
            if compiled is None:
                compiled = self.compile_fn(fn, **options)
            return compiled(*args, **kwargs)

        return run

    def report(self) -> Check | None:
        """A passed check saying what torch.compile did, when the candidate used it."""
        if not self.functions:
            return None
        if self.cuda:
            message = (
                "torch.compile: compiled on CUDA at the first call with CUDA tensors (its time is in "
                "compile_seconds, apart from training); identity on CPU tensors (the functional checks)"
            )
        else:
            message = "torch.compile: identity on CPU (the sandbox runs the function as written)"
        measurements = {"functions": float(self.functions), "compiled": float(self.cuda)}
        return {
            "name": "functional.torch_compile",
            "passed": True,
            "message": message,
            "measurements": measurements,
        }


def _without_guarded_imports(tree: ast.Module) -> ast.Module:
    for guard in type_checking_guards(tree):
        kept = [s for s in guard.body if not isinstance(s, ast.Import | ast.ImportFrom)]
        guard.body = kept or [ast.copy_location(ast.Pass(), guard)]
    return tree


def load_layer(source: str, class_name: str) -> type[nn.Module]:
    """Execute the module source and return its layer class."""
    module = types.ModuleType("candidate")
    module.__file__ = "candidate.py"
    code = compile(_without_guarded_imports(ast.parse(source)), "candidate.py", "exec")
    exec(code, module.__dict__)  # runs inside the sandbox child only
    layer = module.__dict__.get(class_name)
    if not isinstance(layer, type) or not issubclass(layer, nn.Module):
        raise TypeError(f"{class_name!r} is not a torch.nn.Module subclass")
    return layer
