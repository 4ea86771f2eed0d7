"""Budget presets and the typed, frozen `Budget` they resolve into.

A preset fills every field; a request may override some (OVERRIDABLE). The
resolved `Budget` is the one object the functional checks, the training run,
the sandbox job and the record of the evaluation read, so what was run is
exactly what is reported. Every `Budget` is valid: construction (and
`dataclasses.replace`) checks it and raises BudgetError naming the field.

What this module owns: the preset numbers (PRESETS), including each preset's
default precision, chosen from the measurements in docs/benchmarks.md; the
rung-2 derivation; the bounds of every field. The names of the presets and
precisions are the contract's enums (asiarch.common.contract.budget_presets()
and precisions()); PRESETS and PRECISIONS hold the numbers and the behaviour
for each of those names, and a test keeps the two equal. The conversions to
and from the contract (`from_proto`, `to_proto`) and to and from the JSON the
sandbox child reads (`to_json`, `from_json`) live on the Budget.

A frozen dataclass rather than a pydantic model: the checks and their messages
are part of the contract (INVALID_ARGUMENT names the field, tests pin the
wording), which pydantic would wrap in its own ValidationError; the input is a
typed proto message, not loose JSON; and the sandbox child imports this module
before it runs candidate code, where the less it loads the better.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asiarch.common.contract import budget_presets, name_of, precisions
from asiarch.common.devices import DEVICE_PATTERN, DEVICES

if TYPE_CHECKING:
    from asiarch.v1 import common_pb2

# The budget's precision: "fp32" runs everything in float32 without autocast; "bf16-autocast" runs the forward
# passes under torch.autocast(dtype=bfloat16), as ASI-Arch trains (asiarch.engineer.precision applies it).
FP32 = "fp32"
BF16_AUTOCAST = "bf16-autocast"
PRECISIONS = (FP32, BF16_AUTOCAST)
# The contract's BudgetPreset names.
SMOKE, CPU, GPU, SMALL = "smoke", "cpu", "gpu", "small"
DEFAULT_PRESET = CPU
# Rung 2 trains longer on the same sizes (successive halving promotes the best).
RUNG_STEP_FACTOR = {1: 1, 2: 4}
# The longest evaluation a rung-1 budget may ask for (30 days; rung 2 scales it with its steps).
MAX_WALL_CLOCK_SECONDS = 30 * 24 * 3600.0
# The fields a request may set (Budget's optional fields in the contract).
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
_MINIMUMS = {"train_steps": 1, "batch_size": 1, "seq_len": 8, "d_model": 8, "n_layers": 1, "n_heads": 1}
_FLOATS = ("learning_rate", "wall_clock_seconds", "mqar_learning_rate")


class BudgetError(ValueError):
    """A budget that cannot run; the message names the field."""


@dataclass(frozen=True)
class Preset:
    """A preset's numbers at rung 1: sizes, rung-1 steps and wall clock, MQAR's task, the precision."""

    train_steps: int
    batch_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    learning_rate: float
    wall_clock_seconds: float
    max_parameters: int
    mqar_steps: int
    mqar_batch_size: int
    mqar_learning_rate: float
    mqar_vocab: int
    mqar_settings: tuple[tuple[int, int], ...]  # (seq_len, kv_pairs)
    eval_batches: int
    precision: str


PRESETS: dict[str, Preset] = {
    # Seconds per candidate: wiring checks and tests. The numbers are noise.
    SMOKE: Preset(
        train_steps=6,
        batch_size=4,
        seq_len=64,
        d_model=32,
        n_layers=1,
        n_heads=2,
        learning_rate=3e-3,
        wall_clock_seconds=180.0,
        max_parameters=2_000_000,
        mqar_steps=6,
        mqar_batch_size=4,
        mqar_learning_rate=3e-3,
        mqar_vocab=64,
        mqar_settings=((32, 2), (32, 4), (64, 4)),
        eval_batches=2,
        # bf16 autocast gave the same numbers in the same time here (docs/benchmarks.md); fp32 matches `cpu`.
        precision=FP32,
    ),
    # The cpu budget's model at fewer steps with a shorter recall task: many candidates per CPU-hour. Its
    # noise floor is measured (docs/baselines.md); the discovery benchmark runs at it (docs/discovery.md).
    SMALL: Preset(
        train_steps=150,
        batch_size=8,
        seq_len=128,
        d_model=64,
        n_layers=2,
        n_heads=4,
        learning_rate=2e-3,
        wall_clock_seconds=300.0,
        max_parameters=5_000_000,
        mqar_steps=300,
        mqar_batch_size=32,
        mqar_learning_rate=3e-3,
        mqar_vocab=64,
        mqar_settings=((32, 2), (32, 4), (64, 4)),
        eval_batches=8,
        precision=FP32,
    ),
    # The default: one candidate's first rung in about two minutes on 2 cores.
    CPU: Preset(
        train_steps=300,
        batch_size=8,
        seq_len=128,
        d_model=64,
        n_layers=2,
        n_heads=4,
        learning_rate=2e-3,
        wall_clock_seconds=600.0,
        max_parameters=5_000_000,
        # Sized so recall separates the baselines (docs/baselines.md): a small vocabulary, short sequences,
        # many examples. At the earlier 400 steps of length 64-256 every layer, softmax attention included,
        # stayed near chance; at 500 steps of these the delta-rule layers were bimodal (a seed "clicks" or
        # not, sd 0.07-0.17); at 1,000 they learn the task (MQAR sweep, issue 15 note).
        mqar_steps=1000,
        mqar_batch_size=32,
        mqar_learning_rate=3e-3,
        mqar_vocab=64,
        mqar_settings=((32, 4), (64, 8), (64, 16)),
        eval_batches=8,
        # On 2 CPU cores bf16 autocast was no faster and DeltaNet's MQAR fell on every seed
        # (docs/benchmarks.md); docs/baselines.md and the noise floor were measured in fp32.
        precision=FP32,
    ),
    # ASI-Arch's exploration scale: 8 layers, d_model 256, 8 heads, 2,000 steps, context 2,048.
    GPU: Preset(
        train_steps=2000,
        batch_size=16,
        seq_len=2048,
        d_model=256,
        n_layers=8,
        n_heads=8,
        learning_rate=1e-3,
        wall_clock_seconds=3 * 3600.0,
        max_parameters=40_000_000,
        # Zoology's scale (vocabulary 8,192); not measured here yet (no GPU was lent).
        mqar_steps=1000,
        mqar_batch_size=16,
        mqar_learning_rate=1e-3,
        mqar_vocab=8192,
        mqar_settings=((256, 16), (512, 32), (1024, 64)),
        eval_batches=32,
        # ASI-Arch's setup, which its layers' bf16 casts assume; not measured here (no GPU was lent).
        precision=BF16_AUTOCAST,
    ),
}


def _check_preset_and_rung(preset: str, rung: int) -> None:
    if preset not in PRESETS:
        raise BudgetError(f"budget.preset: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if rung not in RUNG_STEP_FACTOR:
        raise BudgetError(f"budget.rung must be 1 or 2, got {rung}")


@dataclass(frozen=True)
class Budget(Preset):
    """What one evaluation runs with: a preset's numbers, resolved for a rung, a seed and a device."""

    preset: str
    rung: int
    seed: int
    device: str

    def __post_init__(self) -> None:
        # JSON has no tuples and may carry a whole number where a float is meant: normalise what it brings.
        object.__setattr__(self, "mqar_settings", tuple(tuple(pair) for pair in self.mqar_settings))
        for name in _FLOATS:
            object.__setattr__(self, name, float(getattr(self, name)))
        self._check()

    def _check(self) -> None:
        _check_preset_and_rung(self.preset, self.rung)
        for name, least in _MINIMUMS.items():
            if int(getattr(self, name)) < least:
                raise BudgetError(f"budget.{name} must be at least {least}, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise BudgetError(f"budget.n_heads ({self.n_heads}) must divide budget.d_model ({self.d_model})")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise BudgetError(f"budget.learning_rate must be > 0 and finite, got {self.learning_rate}")
        # The sandbox turns the wall clock into a CPU-seconds rlimit, a C integer: bound it in the budget.
        longest = MAX_WALL_CLOCK_SECONDS * RUNG_STEP_FACTOR[self.rung]
        if not 0 < self.wall_clock_seconds <= longest:
            raise BudgetError(
                f"budget.wall_clock_seconds must be > 0 and at most {longest:g} at rung {self.rung}, "
                f"got {self.wall_clock_seconds}"
            )
        if DEVICE_PATTERN.fullmatch(self.device) is None:
            raise BudgetError(f"budget.device must be {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            valid = ", ".join(PRECISIONS)
            raise BudgetError(f"budget.precision must be one of {valid}, got {self.precision!r}")

    def rung_two(self) -> Budget:
        """This rung-1 budget promoted to rung 2: the same sizes and precision, more steps and wall clock."""
        if self.rung != 1:
            raise ValueError(f"only a rung-1 budget is promoted, not rung {self.rung}")
        factor = RUNG_STEP_FACTOR[2] // RUNG_STEP_FACTOR[1]
        return dataclasses.replace(
            self,
            rung=2,
            train_steps=self.train_steps * factor,
            mqar_steps=self.mqar_steps * factor,
            wall_clock_seconds=self.wall_clock_seconds * factor,
        )

    @classmethod
    def from_proto(
        cls,
        message: common_pb2.Budget,
        default_preset: str,
        default_device: str,
        wall_factor: float = 1.0,
    ) -> Budget:
        """Resolve a Budget message: UNSPECIFIED enums and unset fields are the defaults and the preset's."""
        return resolve(
            name_of(budget_presets(), message.preset) or default_preset,
            {name: getattr(message, name) for name in OVERRIDABLE if message.HasField(name)},
            rung=message.rung or 1,
            seed=message.seed,
            device=message.device or default_device,
            wall_factor=wall_factor,
            precision=name_of(precisions(), message.precision),
        )

    def to_proto(self) -> common_pb2.Budget:
        """The Budget message with every field set, the precision that ran included."""
        from asiarch.v1 import common_pb2

        message = common_pb2.Budget(
            preset=budget_presets()[self.preset],  # type: ignore[arg-type]
            device=self.device,
            rung=self.rung,
            seed=self.seed,
            precision=precisions()[self.precision],  # type: ignore[arg-type]
        )
        for name in OVERRIDABLE:
            setattr(message, name, getattr(self, name))
        return message

    def to_json(self) -> dict[str, Any]:
        """Every field as a JSON object (what the sandbox job carries to the child)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> Budget:
        """The Budget `to_json` gave (checked again: it crossed a process boundary)."""
        return cls(**fields)


def resolve(
    preset: str = DEFAULT_PRESET,
    overrides: Mapping[str, Any] | None = None,
    rung: int = 1,
    seed: int = 0,
    device: str = "cpu",
    wall_factor: float = 1.0,
    precision: str | None = None,
) -> Budget:
    """The budget to run: the preset, the overrides, the rung's steps. A preset's wall-clock limit grows
    with the rung's steps and with `wall_factor` (the engineer's step-time calibration); a limit the
    caller set is used as given. `precision` None is the preset's."""
    _check_preset_and_rung(preset, rung)
    overrides = dict(overrides or {})
    if refused := [name for name in overrides if name not in OVERRIDABLE]:
        raise BudgetError(f"budget.{refused[0]} cannot be set")
    asked = dataclasses.replace(PRESETS[preset], **overrides)
    factor = RUNG_STEP_FACTOR[rung]
    wall = asked.wall_clock_seconds
    if "wall_clock_seconds" not in overrides:
        wall = wall * factor * wall_factor
    numbers = dataclasses.replace(
        asked,
        train_steps=asked.train_steps * factor,
        mqar_steps=asked.mqar_steps * factor,
        wall_clock_seconds=wall,
        precision=asked.precision if precision is None else precision,
    )
    return Budget(**dataclasses.asdict(numbers), preset=preset, rung=rung, seed=seed, device=device or "cpu")
