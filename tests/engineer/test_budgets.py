"""The Budget crosses the contract and the sandbox's process boundary unchanged, and stays valid."""

from __future__ import annotations

import dataclasses
import json

import pytest

from asiarch.engineer.budgets import PRESETS, Budget, BudgetError, resolve
from asiarch.v1 import common_pb2

BUDGETS = [
    resolve("smoke"),
    resolve("cpu", {"d_model": 96, "n_heads": 6, "learning_rate": 1e-3}, seed=4, wall_factor=1.7),
    resolve("gpu", rung=2, device="cuda:1", precision="fp32"),
]


@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: b.preset)
def test_a_budget_survives_the_json_the_sandbox_child_reads(budget: Budget) -> None:
    received = Budget.from_json(json.loads(json.dumps(budget.to_json())))
    assert received == budget
    assert received.mqar_settings == PRESETS[budget.preset].mqar_settings  # tuples again, not lists


@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: b.preset)
def test_a_budget_survives_the_contract(budget: Budget) -> None:
    message = budget.to_proto()
    assert common_pb2.Budget.FromString(message.SerializeToString()) == message
    if budget.rung == 1:  # a request's train_steps are rung 1's: at rung 2 the echo is not a request for it
        # Every overridable field is set in the echo, so resolving it again changes nothing (no calibration).
        assert Budget.from_proto(message, "smoke", "cpu", wall_factor=3.0) == budget


def test_unset_fields_are_the_callers_defaults_and_the_presets() -> None:
    budget = Budget.from_proto(common_pb2.Budget(seed=5), "smoke", "cuda", wall_factor=2.0)
    assert budget == resolve("smoke", seed=5, device="cuda", wall_factor=2.0)
    assert budget.wall_clock_seconds == 2 * PRESETS["smoke"].wall_clock_seconds


def test_rung_two_is_rung_one_with_four_times_the_steps_and_wall_clock() -> None:
    first = resolve("cpu", {"d_model": 96, "n_heads": 6}, seed=2, wall_factor=1.5, precision="bf16-autocast")
    second = first.rung_two()
    assert (second.rung, second.train_steps, second.mqar_steps) == (2, 1200, 4000)
    assert second.wall_clock_seconds == 4 * first.wall_clock_seconds == 4 * 1.5 * 600
    unchanged = {f.name for f in dataclasses.fields(Budget)} - {"rung", "train_steps", "mqar_steps"}
    assert {name: getattr(second, name) for name in unchanged - {"wall_clock_seconds"}} == {
        name: getattr(first, name) for name in unchanged - {"wall_clock_seconds"}
    }


def test_a_budget_is_frozen_and_every_copy_is_checked() -> None:
    budget = resolve("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.seed = 1  # type: ignore[misc]
    with pytest.raises(BudgetError, match=r"budget\.n_heads \(3\) must divide budget\.d_model \(32\)"):
        dataclasses.replace(budget, n_heads=3)
    with pytest.raises(BudgetError, match=r"budget\.eval_batches cannot be set"):
        resolve("smoke", {"eval_batches": 1})


def test_the_engineers_default_preset_is_one_of_the_contracts_with_the_same_error_as_before() -> None:
    from asiarch.common.config import load_settings
    from asiarch.common.errors import ConfigError
    from asiarch.engineer.config import EngineerSettings

    assert load_settings(EngineerSettings, engineer_default_budget="gpu").engineer_default_budget == "gpu"
    with pytest.raises(ConfigError) as caught:
        load_settings(EngineerSettings, engineer_default_budget="huge")
    assert str(caught.value) == (
        "invalid configuration: ASIARCH_ENGINEER_DEFAULT_BUDGET: "
        "Input should be 'smoke', 'cpu', 'gpu' or 'small' (got 'huge')"
    )
