"""A budget's numbers are finite and bounded wherever it is resolved (requests, commands, rung 2)."""

from __future__ import annotations

import pytest

from asiarch.engineer.budgets import MAX_WALL_CLOCK_SECONDS, BudgetError, resolve


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": float("inf")}, "budget.learning_rate must be > 0 and finite, got inf"),
        ({"learning_rate": float("nan")}, "budget.learning_rate must be > 0 and finite, got nan"),
        ({"wall_clock_seconds": float("inf")}, "budget.wall_clock_seconds must be > 0 and at most 2.592e"),
        ({"wall_clock_seconds": float("nan")}, "budget.wall_clock_seconds must be > 0"),
        # Finite, but the sandbox's CPU-seconds rlimit (a C long) could not hold it.
        ({"wall_clock_seconds": 1e300}, "budget.wall_clock_seconds must be > 0 and at most"),
    ],
)
def test_non_finite_or_unbounded_numbers_name_the_field(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(BudgetError, match=message.replace(".", r"\.")):
        resolve("smoke", overrides)


def test_the_longest_rung_one_wall_clock_still_promotes_to_rung_two() -> None:
    budget = resolve("smoke", {"wall_clock_seconds": MAX_WALL_CLOCK_SECONDS})
    assert budget.rung_two().wall_clock_seconds == 4 * MAX_WALL_CLOCK_SECONDS
    with pytest.raises(BudgetError, match="at most"):
        resolve("smoke", {"wall_clock_seconds": 2 * MAX_WALL_CLOCK_SECONDS})
