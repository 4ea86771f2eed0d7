"""How a budget's precision is applied inside the sandbox, and what a dtype clash is told as.

`autocast(precision, device)` is the one context every forward pass of the
functional checks, training, validation loss and MQAR runs in: nothing for
"fp32", `torch.autocast(dtype=bfloat16)` for "bf16-autocast" on CPU and
CUDA alike. Callers keep the loss and the backward pass outside it, so the
loss is computed in float32 and the optimiser's weights stay float32.

`dtype_clash(exc, precision)` turns the RuntimeError torch raises when a
layer mixes bfloat16 and float32 (ASI-Arch's layers cast intermediates to
bf16 on purpose) into a sentence that names the dtypes, the line and the
precision that would run it; None for any other error.
"""

from __future__ import annotations

import contextlib
import re
import traceback

import torch

from asiarch.engineer.budgets import BF16_AUTOCAST, FP32

# The messages torch gives when an operation's inputs have different dtypes (matmul, bmm, einsum,
# linear, addmm, baddbmm, conv, index_put, masked_scatter), as of torch 2.13.
_CLASH = re.compile(
    r"expected scalar type \w+ but found \w+"
    r"|to have the same dtype"
    r"|must have the same dtype"
    r"|Input dtypes must be the same"
    r"|dtypes match"
    r"|to have same dtypes"
    r"|Input type \(.*\) and weight type \(.*\) should be the same"
)
CANDIDATE_FILE = "candidate.py"  # the name asiarch.engineer.candidate compiles the source under


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[object]:
    """The context a forward pass runs in under `precision` on `device`."""
    if precision == FP32:
        return contextlib.nullcontext()
    if precision == BF16_AUTOCAST:
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}")


def candidate_line(exc: BaseException) -> int:
    """The last line of the candidate's own code the exception passed through; 0 when none."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == CANDIDATE_FILE]
    return (frames[-1].lineno or 0) if frames else 0


def dtype_clash(exc: BaseException, precision: str) -> str | None:
    """What to tell the author when `exc` is torch refusing to mix dtypes; None for any other error."""
    if not isinstance(exc, RuntimeError) or _CLASH.search(str(exc)) is None:
        return None
    line = candidate_line(exc)
    where = f" at line {line}" if line else ""
    said = str(exc).splitlines()[0]
    if precision == FP32:
        advice = (
            f"the budget's precision is {FP32}, so nothing is cast for it: run it with precision "
            f"{BF16_AUTOCAST} (--precision {BF16_AUTOCAST}; Budget.precision = PRECISION_BF16_AUTOCAST), "
            "as ASI-Arch trained, or keep its tensors in one dtype"
        )
    else:
        advice = (
            f"even under {BF16_AUTOCAST}, which casts matmuls, linear layers and convolutions but not "
            "in-place, indexing or scatter operations: cast both sides to one dtype there"
        )
    return f"the layer mixes tensor dtypes{where} ({said}); {advice}"
