"""Functional checks, run inside the sandbox on the candidate layer.

Each check returns a dict shaped like the proto's CheckResult (name, passed,
message, measurements). They stop at the first failure, like the static
checks, because later checks assume earlier ones hold (shapes before
causality, causality before training). Every forward pass runs under the
budget's precision (asiarch.engineer.precision), the one training will use; a
layer that mixes bf16 and float32 where that precision does not reconcile
them fails "functional.precision", naming the line and the precision that
would run it, instead of crashing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from asiarch.engineer.budgets import BF16_AUTOCAST, Budget
from asiarch.engineer.precision import autocast, candidate_line, dtype_clash
from asiarch.kernels.models import LanguageModel, mixer_output

Check = dict[str, Any]
SHAPES = ((1, 17), (2, 64), (3, 33))  # (batch, length): odd lengths and a chunk-sized one
COMPLEXITY_LENGTHS = (256, 1024)
# Linear growth gives 4x at 4x the length, quadratic 16x; reject beyond the geometric middle.
MAX_GROWTH = 8.0
# Causality allows the same tiny difference under every precision. Under bf16 autocast a leak below this share
# of the output's scale may be rounding (bf16 keeps 8 bits), which the message then says.
BF16_ROUNDING = 2.0**-5


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces (catches T x T intermediates)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, tuple | list) else (out,):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


def _check(name: str, passed: bool, message: str = "", **measurements: float) -> Check:
    return {"name": name, "passed": passed, "message": message, "measurements": measurements}


def _run(layer: torch.nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    with autocast(precision, x.device):
        return mixer_output(layer(x))


def check_shapes(layer: torch.nn.Module, dim: int, precision: str) -> Check:
    for batch, length in SHAPES:
        x = torch.randn(batch, length, dim)
        y = _run(layer, x, precision)
        if tuple(y.shape) != (batch, length, dim):
            return _check(
                "functional.shapes",
                False,
                f"input [{batch}, {length}, {dim}] gave output {list(y.shape)}; "
                f"expected [{batch}, {length}, {dim}]",
            )
    return _check("functional.shapes", True)


def check_finite(layer: torch.nn.Module, dim: int, precision: str) -> Check:
    x = torch.randn(2, 64, dim)
    y = _run(layer, x, precision)  # the backward below runs outside autocast, as in training
    if not torch.isfinite(y).all():
        bad = (~torch.isfinite(y)).sum().item()
        return _check("functional.finite", False, f"the output has {bad} NaN/inf values for a normal input")
    layer.zero_grad(set_to_none=True)
    y.float().pow(2).mean().backward()
    grads = [(n, p.grad) for n, p in layer.named_parameters() if p.requires_grad]
    missing = [n for n, g in grads if g is None]
    if grads and len(missing) == len(grads):
        return _check("functional.backward", False, "backward ran but no parameter received a gradient")
    for name, grad in grads:
        if grad is not None and not torch.isfinite(grad).all():
            return _check("functional.backward", False, f"the gradient of {name!r} has NaN/inf values")
    return _check("functional.finite", True)


def check_causality(layer: torch.nn.Module, dim: int, precision: str) -> Check:
    length = 48
    x = torch.randn(2, length, dim)
    with torch.no_grad():
        y = _run(layer, x, precision)
        for t in (1, length // 3, length - 1):
            x2 = x.clone()
            x2[:, t:] = torch.randn_like(x2[:, t:]) * 3
            y2 = _run(layer, x2, precision)
            leak = (y2[:, :t] - y[:, :t]).abs().max().item()
            scale = y[:, :t].abs().max().item() + 1e-6
            if leak > 1e-4 * max(1.0, scale):
                return _check(
                    "functional.causality",
                    False,
                    f"changing tokens from position {t} on changed the output at earlier positions "
                    f"(max difference {leak:.3g}): the layer looks at future tokens"
                    + _rounding_hint(precision, leak, scale),
                    leak=leak,
                    position=float(t),
                )
    return _check("functional.causality", True)


def _rounding_hint(precision: str, leak: float, scale: float) -> str:
    if precision != BF16_AUTOCAST or leak > BF16_ROUNDING * max(1.0, scale):
        return ""
    return (
        f", or it rounds them into earlier outputs: a difference this small under {BF16_AUTOCAST} comes from "
        "computing an earlier output as a total minus its later part (e.g. cumsum(x) - x), which carries the "
        "later part's bf16 rounding; sum only the earlier part"
    )


def _cost(layer: torch.nn.Module, dim: int, length: int, precision: str) -> tuple[float, int, float]:
    x = torch.randn(1, length, dim)
    with torch.no_grad():
        flops = FlopCounterMode(display=False)
        largest = LargestTensor()
        with flops, largest:
            _run(layer, x, precision)
        started = time.perf_counter()
        _run(layer, x, precision)
        seconds = time.perf_counter() - started
    return float(flops.get_total_flops()), largest.largest, seconds


def check_complexity(layer: torch.nn.Module, dim: int, reference_only: bool, precision: str) -> Check:
    short, long = COMPLEXITY_LENGTHS
    flops_short, size_short, time_short = _cost(layer, dim, short, precision)
    flops_long, size_long, time_long = _cost(layer, dim, long, precision)
    flop_growth = flops_long / flops_short if flops_short else 0.0
    size_growth = size_long / max(size_short, 1)
    measured = {
        "flop_growth": flop_growth,
        "largest_tensor_growth": size_growth,
        "time_growth": time_long / max(time_short, 1e-9),
    }
    worst = max(flop_growth, size_growth)
    if worst > MAX_GROWTH and not reference_only:
        what = "FLOPs" if flop_growth >= size_growth else "the largest intermediate tensor"
        return _check(
            "functional.complexity",
            False,
            f"{what} grew {worst:.1f}x from T={short} to T={long} (4x longer): quadratic in the "
            f"sequence length (linear gives about 4x, the limit is {MAX_GROWTH:g}x)",
            **measured,
        )
    return _check("functional.complexity", True, **measured)


def check_parameters(layer_type: type[torch.nn.Module], budget: Budget) -> Check:
    model = LanguageModel(layer_type, 256, budget.d_model, budget.n_layers, budget.n_heads)
    total = sum(p.numel() for p in model.parameters())
    limit = budget.max_parameters
    if total > limit:
        return _check(
            "functional.parameters",
            False,
            f"the model has {total:,} parameters with this layer; the budget allows {limit:,}",
            parameters=float(total),
        )
    return _check(
        "functional.parameters", True, parameters=float(total), layer=float(model.layer_parameters())
    )


def _precision_checked(step: Callable[[], Check], precision: str) -> Check:
    """The check's verdict; a dtype clash is a failed "functional.precision" check, other errors propagate."""
    try:
        return step()
    except RuntimeError as exc:
        message = dtype_clash(exc, precision)
        if message is None:
            raise
        failed = _check("functional.precision", False, message)
        failed["line"] = candidate_line(exc)
        return failed


def run_functional_checks(
    layer_type: type[torch.nn.Module],
    budget: Budget,
    reference_only: bool,
    emit: Callable[[Check], None],
) -> list[Check]:
    dim, heads, precision = budget.d_model, budget.n_heads, budget.precision
    torch.manual_seed(budget.seed)
    layer = layer_type(hidden_size=dim, num_heads=heads, layer_idx=0)
    layer.eval()
    steps: list[Callable[[], Check]] = [
        lambda: check_shapes(layer, dim, precision),
        lambda: check_causality(layer, dim, precision),
        lambda: check_finite(layer, dim, precision),
        lambda: check_complexity(layer, dim, reference_only, precision),
        lambda: check_parameters(layer_type, budget),
    ]
    results = []
    for step in steps:
        started = time.perf_counter()
        result = _precision_checked(step, precision)
        result["duration_seconds"] = time.perf_counter() - started
        results.append(result)
        emit(result)
        if not result["passed"]:
            break
    return results
