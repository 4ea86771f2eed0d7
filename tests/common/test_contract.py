"""asiarch.common.contract: shared names follow the proto's enums; a new enum value needs no other edit."""

from __future__ import annotations

import pytest

from asiarch.common import contract
from asiarch.v1 import common_pb2


@pytest.mark.parametrize(
    ("names", "enum"),
    [
        (contract.budget_presets, common_pb2.BudgetPreset),
        (contract.precisions, common_pb2.Precision),
        (contract.proposal_modes, common_pb2.ProposalMode),
    ],
)
def test_every_defined_enum_value_has_one_option_name(names, enum) -> None:
    assert sorted(names().values()) == sorted(value for value in enum.values() if value)
    for name, value in names().items():
        assert contract.name_of(names(), value) == name


def test_the_names_people_type() -> None:
    assert list(contract.budget_presets()) == ["smoke", "cpu", "gpu", "small"]
    assert list(contract.precisions()) == ["fp32", "bf16-autocast"]
    assert contract.preset_name(common_pb2.BUDGET_PRESET_GPU) == "gpu"
    assert contract.preset_name(common_pb2.BUDGET_PRESET_UNSPECIFIED) == "unspecified"
    assert contract.stage_key(common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS) == "functional_checks"
    assert contract.stage_label(common_pb2.EVALUATION_STAGE_STATIC_CHECKS) == "static checks"


@pytest.mark.parametrize("given", ["run-1", "r.c3.e2:s1", "a" * 128])
def test_experiment_ids_that_are_valid(given: str) -> None:
    assert contract.EXPERIMENT_ID.fullmatch(given)


@pytest.mark.parametrize("given", ["", "a" * 129, "has space", "slash/", "ünï"])
def test_experiment_ids_that_are_not(given: str) -> None:
    assert contract.EXPERIMENT_ID.fullmatch(given) is None


@pytest.mark.parametrize(
    ("similarity", "novelty"), [(1.0, 0.0), (0.25, 0.75), (0.0, 1.0), (1.5, 0.0), (-0.2, 1.0)]
)
def test_novelty_is_one_minus_similarity_clamped(similarity: float, novelty: float) -> None:
    assert contract.novelty(similarity) == pytest.approx(novelty)
    assert contract.similarity(contract.novelty(similarity)) == pytest.approx(min(1.0, max(0.0, similarity)))
