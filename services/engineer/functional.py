"""Functional checks, run inside the sandbox on the candidate layer.

Each check returns a dict shaped like the proto's CheckResult (name, passed,
message, measurements). They stop at the first failure, like the static
checks, because later checks assume earlier ones hold (shapes before
causality, causality before training).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from asiarch.engineer.backbone import LanguageModel, mixer_output

Check = dict[str, Any]
SHAPES = ((1, 17), (2, 64), (3, 33))  # (batch, length): odd lengths and a chunk-sized one
COMPLEXITY_LENGTHS = (256, 1024)
# Linear growth gives 4x at 4x the length, quadratic 16x; reject beyond the geometric middle.
MAX_GROWTH = 8.0


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


def _run(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return mixer_output(layer(x))


def check_shapes(layer: torch.nn.Module, dim: int) -> Check:
    for batch, length in SHAPES:
        x = torch.randn(batch, length, dim)
        y = _run(layer, x)
        if tuple(y.shape) != (batch, length, dim):
            return _check(
                "functional.shapes",
                False,
                f"input [{batch}, {length}, {dim}] gave output {list(y.shape)}; "
                f"expected [{batch}, {length}, {dim}]",
            )
    return _check("functional.shapes", True)


def check_finite(layer: torch.nn.Module, dim: int) -> Check:
    x = torch.randn(2, 64, dim)
    y = _run(layer, x)
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


def check_causality(layer: torch.nn.Module, dim: int) -> Check:
    length = 48
    x = torch.randn(2, length, dim)
    with torch.no_grad():
        y = _run(layer, x)
        for t in (1, length // 3, length - 1):
            x2 = x.clone()
            x2[:, t:] = torch.randn_like(x2[:, t:]) * 3
            y2 = _run(layer, x2)
            leak = (y2[:, :t] - y[:, :t]).abs().max().item()
            scale = y[:, :t].abs().max().item() + 1e-6
            if leak > 1e-4 * max(1.0, scale):
                return _check(
                    "functional.causality",
                    False,
                    f"changing tokens from position {t} on changed the output at earlier positions "
                    f"(max difference {leak:.3g}): the layer looks at future tokens",
                    leak=leak,
                    position=float(t),
                )
    return _check("functional.causality", True)


def _cost(layer: torch.nn.Module, dim: int, length: int) -> tuple[float, int, float]:
    x = torch.randn(1, length, dim)
    with torch.no_grad():
        flops = FlopCounterMode(display=False)
        largest = LargestTensor()
        with flops, largest:
            _run(layer, x)
        started = time.perf_counter()
        _run(layer, x)
        seconds = time.perf_counter() - started
    return float(flops.get_total_flops()), largest.largest, seconds


def check_complexity(layer: torch.nn.Module, dim: int, reference_only: bool) -> Check:
    short, long = COMPLEXITY_LENGTHS
    flops_short, size_short, time_short = _cost(layer, dim, short)
    flops_long, size_long, time_long = _cost(layer, dim, long)
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


def check_parameters(layer_type: type[torch.nn.Module], budget: dict[str, Any]) -> Check:
    model = LanguageModel(layer_type, 256, budget["d_model"], budget["n_layers"], budget["n_heads"])
    total = sum(p.numel() for p in model.parameters())
    limit = budget["max_parameters"]
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


def run_functional_checks(
    layer_type: type[torch.nn.Module],
    budget: dict[str, Any],
    reference_only: bool,
    emit: Callable[[Check], None],
) -> list[Check]:
    dim, heads = budget["d_model"], budget["n_heads"]
    torch.manual_seed(budget.get("seed", 0))
    layer = layer_type(hidden_size=dim, num_heads=heads, layer_idx=0)
    layer.eval()
    steps: list[Callable[[], Check]] = [
        lambda: check_shapes(layer, dim),
        lambda: check_causality(layer, dim),
        lambda: check_finite(layer, dim),
        lambda: check_complexity(layer, dim, reference_only),
        lambda: check_parameters(layer_type, budget),
    ]
    results = []
    for step in steps:
        started = time.perf_counter()
        result = step()
        result["duration_seconds"] = time.perf_counter() - started
        results.append(result)
        emit(result)
        if not result["passed"]:
            break
    return results
