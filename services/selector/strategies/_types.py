"""Types shared by the strategy modules and the public entry point.

They live apart from `strategies/__init__.py` so the strategy modules can
import them without importing the package that imports them (a cycle).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from asiarch.selector.population import Candidate, Options, Population


@dataclass(frozen=True)
class Choice:
    """One chosen parent with the references to show alongside it."""

    parent_id: str
    reference_ids: tuple[str, ...]
    score: float  # the strategy's own measure (UCT value, sampled theta, fitness, front index, ...)
    reason: str  # one sentence on why this candidate was chosen


class NextAction(enum.Enum):
    """hgm's advice on what to do with the chosen node; other strategies give none."""

    NONE = "none"
    EXPAND = "expand"
    REEVALUATE = "reevaluate"


@dataclass(frozen=True)
class Selection:
    """The answer of select_parents."""

    strategy: str
    choices: tuple[Choice, ...]  # k choices, distinct parents, best first where that means something
    next_action: NextAction = NextAction.NONE
    next_action_reason: str = ""


@dataclass(frozen=True)
class StrategyInfo:
    """What ListStrategies reports about a strategy."""

    name: str
    description: str  # one line
    source: str  # paper or code it follows
    options: tuple[str, ...]  # Options fields it reads


@dataclass(frozen=True)
class Pick:
    """A strategy's choice before references are attached."""

    candidate: Candidate
    score: float
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What a strategy returns: k distinct picks in the order to report them."""

    picks: tuple[Pick, ...]
    next_action: NextAction = NextAction.NONE
    next_action_reason: str = ""


# A strategy gets a validated population, 1 <= k <= len(population.eligible()),
# validated options and the request's RNG, and must draw randomness only from it.
SelectFn = Callable[[Population, int, random.Random, Options], Outcome]


@dataclass(frozen=True)
class Strategy:
    info: StrategyInfo
    select: SelectFn
