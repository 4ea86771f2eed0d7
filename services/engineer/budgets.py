"""Budget presets and their resolution into concrete numbers.

A preset fills every field; a request may override any of them. The same
resolved dict is used by the functional checks, the training run and the
record of the evaluation, so what was run is exactly what is reported. That
includes the precision (PRECISIONS): each preset holds its default, chosen
from the measurements in docs/benchmarks.md, and this module is the only
place that decides it.
"""

from __future__ import annotations

import math
from typing import Any

from asiarch.common.devices import DEVICE_PATTERN, DEVICES

# The budget's precision: "fp32" runs everything in float32 without autocast; "bf16-autocast" runs the forward
# passes under torch.autocast(dtype=bfloat16), as ASI-Arch trains (asiarch.engineer.precision applies it).
FP32 = "fp32"
BF16_AUTOCAST = "bf16-autocast"
PRECISIONS = (FP32, BF16_AUTOCAST)
PRESETS: dict[str, dict[str, Any]] = {
    # Seconds per candidate: wiring checks and tests. The numbers are noise.
    "smoke": {
        "train_steps": 6,
        "batch_size": 4,
        "seq_len": 64,
        "d_model": 32,
        "n_layers": 1,
        "n_heads": 2,
        "learning_rate": 3e-3,
        "wall_clock_seconds": 180.0,
        "max_parameters": 2_000_000,
        "mqar_steps": 6,
        "mqar_batch_size": 4,
        "mqar_learning_rate": 3e-3,
        "mqar_vocab": 64,
        "mqar_settings": [(32, 2), (32, 4), (64, 4)],
        "eval_batches": 2,
        # bf16 autocast gave the same numbers in the same time here (docs/benchmarks.md); fp32 matches `cpu`.
        "precision": FP32,
    },
    # The default: one candidate's first rung in about two minutes on 2 cores.
    "cpu": {
        "train_steps": 300,
        "batch_size": 8,
        "seq_len": 128,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "learning_rate": 2e-3,
        "wall_clock_seconds": 600.0,
        "max_parameters": 5_000_000,
        # Sized so recall separates the baselines (docs/baselines.md): a small vocabulary, short sequences,
        # many examples. At the earlier 400 steps of length 64-256 every layer, softmax attention included,
        # stayed near chance; at 500 steps of these the delta-rule layers were bimodal (a seed "clicks" or
        # not, sd 0.07-0.17); at 1,000 they learn the task (MQAR sweep, issue 15 note).
        "mqar_steps": 1000,
        "mqar_batch_size": 32,
        "mqar_learning_rate": 3e-3,
        "mqar_vocab": 64,
        "mqar_settings": [(32, 4), (64, 8), (64, 16)],
        "eval_batches": 8,
        # On 2 CPU cores bf16 autocast was no faster and DeltaNet's MQAR fell on every seed
        # (docs/benchmarks.md); docs/baselines.md and the noise floor were measured in fp32.
        "precision": FP32,
    },
    # ASI-Arch's exploration scale: 8 layers, d_model 256, 8 heads, 2,000 steps, context 2,048.
    "gpu": {
        "train_steps": 2000,
        "batch_size": 16,
        "seq_len": 2048,
        "d_model": 256,
        "n_layers": 8,
        "n_heads": 8,
        "learning_rate": 1e-3,
        "wall_clock_seconds": 3 * 3600.0,
        "max_parameters": 40_000_000,
        # Zoology's scale (vocabulary 8,192); not measured here yet (no GPU was lent).
        "mqar_steps": 1000,
        "mqar_batch_size": 16,
        "mqar_learning_rate": 1e-3,
        "mqar_vocab": 8192,
        "mqar_settings": [(256, 16), (512, 32), (1024, 64)],
        "eval_batches": 32,
        # ASI-Arch's setup, which its layers' bf16 casts assume; not measured here (no GPU was lent).
        "precision": BF16_AUTOCAST,
    },
}
DEFAULT_PRESET = "cpu"
# Rung 2 trains longer on the same sizes (successive halving promotes the best).
RUNG_STEP_FACTOR = {1: 1, 2: 4}
# The longest evaluation a rung-1 budget may ask for (30 days; rung 2 scales it with its steps).
MAX_WALL_CLOCK_SECONDS = 30 * 24 * 3600.0
OVERRIDABLE = (
    "train_steps",
    "batch_size",
    "seq_len",
    "d_model",
    "n_layers",
    "n_heads",
    "learning_rate",
    "wall_clock_seconds",
    "max_parameters",
)


class BudgetError(ValueError):
    """A budget that cannot run; the message names the field."""


def resolve(
    preset: str = DEFAULT_PRESET,
    overrides: dict[str, Any] | None = None,
    rung: int = 1,
    seed: int = 0,
    device: str = "cpu",
    wall_factor: float = 1.0,
    precision: str | None = None,
) -> dict[str, Any]:
    """The budget to run: the preset, the overrides, the rung's steps. A preset's wall-clock limit grows
    with the rung's steps and with `wall_factor` (the engineer's step-time calibration); a limit the
    caller set is used as given. `precision` None is the preset's."""
    if preset not in PRESETS:
        raise BudgetError(f"budget.preset: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if rung not in RUNG_STEP_FACTOR:
        raise BudgetError(f"budget.rung must be 1 or 2, got {rung}")
    budget = dict(PRESETS[preset])
    for key, value in (overrides or {}).items():
        if key not in OVERRIDABLE:
            raise BudgetError(f"budget.{key} cannot be set")
        budget[key] = value
    factor = RUNG_STEP_FACTOR[rung]
    budget["train_steps"] = budget["train_steps"] * factor
    budget["mqar_steps"] = budget["mqar_steps"] * factor
    if "wall_clock_seconds" not in (overrides or {}):
        budget["wall_clock_seconds"] = budget["wall_clock_seconds"] * factor * wall_factor
    budget.update(preset=preset, rung=rung, seed=seed, device=device or "cpu")
    if precision is not None:
        budget["precision"] = precision
    _validate(budget)
    return budget


def _validate(budget: dict[str, Any]) -> None:
    minimums = {"train_steps": 1, "batch_size": 1, "seq_len": 8, "d_model": 8, "n_layers": 1, "n_heads": 1}
    for key, least in minimums.items():
        if int(budget[key]) < least:
            raise BudgetError(f"budget.{key} must be at least {least}, got {budget[key]}")
    if budget["d_model"] % budget["n_heads"]:
        raise BudgetError(
            f"budget.n_heads ({budget['n_heads']}) must divide budget.d_model ({budget['d_model']})"
        )
    if not (math.isfinite(budget["learning_rate"]) and budget["learning_rate"] > 0):
        raise BudgetError(f"budget.learning_rate must be > 0 and finite, got {budget['learning_rate']}")
    # The sandbox turns the wall clock into a CPU-seconds rlimit, a C integer: bound it in the budget.
    longest = MAX_WALL_CLOCK_SECONDS * RUNG_STEP_FACTOR[budget["rung"]]
    if not 0 < budget["wall_clock_seconds"] <= longest:
        raise BudgetError(
            f"budget.wall_clock_seconds must be > 0 and at most {longest:g} at rung {budget['rung']}, "
            f"got {budget['wall_clock_seconds']}"
        )
    device = budget["device"]
    if DEVICE_PATTERN.fullmatch(device) is None:
        raise BudgetError(f"budget.device must be {DEVICES}, got {device!r}")
    if budget["precision"] not in PRECISIONS:
        valid = ", ".join(PRECISIONS)
        raise BudgetError(f"budget.precision must be one of {valid}, got {budget['precision']!r}")


def resolve_rung_two(budget: dict[str, Any]) -> dict[str, Any]:
    """The rung-2 version of a resolved rung-1 budget (same sizes, more steps)."""
    overrides = {key: budget[key] for key in OVERRIDABLE}
    overrides["train_steps"] = budget["train_steps"] // RUNG_STEP_FACTOR[1]
    overrides["wall_clock_seconds"] = budget["wall_clock_seconds"] * RUNG_STEP_FACTOR[2] / RUNG_STEP_FACTOR[1]
    return resolve(
        budget["preset"],
        overrides,
        rung=2,
        seed=budget["seed"],
        device=budget["device"],
        precision=budget["precision"],
    )
