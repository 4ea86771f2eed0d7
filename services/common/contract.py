"""Names and rules of the contract that more than one service (or command) uses.

The proto files are the source of truth for messages and enums; this module is
the one owner of what they cannot say: the class name a layer exports when a
request names none, the pattern of an experiment id, the option names of the
contract's enums (BUDGET_PRESET_CPU is "cpu", PRECISION_BF16_AUTOCAST is
"bf16-autocast"), and how novelty and similarity relate. A service that needs
one of these imports it from here; none of them is spelled anywhere else.

The generated stubs are imported only when an enum's names are first asked
for, so that modules which merely import this one (the command-line parser)
load nothing of the contract.
"""

from __future__ import annotations

import functools
import re

# ASI-Arch's convention, kept by every layer it published and every one we write: the layer class is DeltaNet.
DEFAULT_CLASS_NAME = "DeltaNet"
# An experiment (or run) id: what the analyst stores it under and the engineer's sandbox folder carries.
EXPERIMENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
EXPERIMENT_ID_RULE = "1-128 characters of [A-Za-z0-9_.:-]"


def _enum_names(enum_name: str, prefix: str) -> dict[str, int]:
    """A contract enum's values by option name: BUDGET_PRESET_SMOKE is "smoke"; UNSPECIFIED (0) has none."""
    from asiarch.v1 import common_pb2

    enum = getattr(common_pb2, enum_name)
    return {
        name.removeprefix(prefix).lower().replace("_", "-"): value for name, value in enum.items() if value
    }


@functools.cache
def budget_presets() -> dict[str, int]:
    """Budget preset names ("smoke", "cpu", "gpu") and their BudgetPreset values."""
    return _enum_names("BudgetPreset", "BUDGET_PRESET_")


@functools.cache
def precisions() -> dict[str, int]:
    """Precision names ("fp32", "bf16-autocast") and their Precision values."""
    return _enum_names("Precision", "PRECISION_")


@functools.cache
def proposal_modes() -> dict[str, int]:
    """Proposal mode names and their ProposalMode values."""
    return _enum_names("ProposalMode", "PROPOSAL_MODE_")


def name_of(names: dict[str, int], value: int) -> str | None:
    """The option name of an enum value in `names` (one of the functions above); None for UNSPECIFIED (0)."""
    return next((name for name, number in names.items() if number == value), None)


def stage_key(stage: int) -> str:
    """An EvaluationStage as a key: EVALUATION_STAGE_FUNCTIONAL_CHECKS is "functional_checks"."""
    from asiarch.v1 import common_pb2

    return common_pb2.EvaluationStage.Name(stage).removeprefix("EVALUATION_STAGE_").lower()


def stage_label(stage: int) -> str:
    """An EvaluationStage as people read it: EVALUATION_STAGE_FUNCTIONAL_CHECKS is "functional checks"."""
    return stage_key(stage).replace("_", " ")


def preset_name(preset: int) -> str:
    """A BudgetPreset value's name ("cpu"); "unspecified" for BUDGET_PRESET_UNSPECIFIED (0)."""
    return name_of(budget_presets(), preset) or "unspecified"


def novelty(similarity: float) -> float:
    """A motivation's novelty from its similarity to the closest stored one, in [0, 1]: 1 - similarity."""
    return max(0.0, min(1.0, 1.0 - similarity))


def similarity(novelty_value: float) -> float:
    """The similarity a novelty stands for (the inverse of `novelty`)."""
    return max(0.0, min(1.0, 1.0 - novelty_value))
