"""A DSL spec's problems stay short whatever the spec holds: they are quoted back to the caller."""

from __future__ import annotations

import json

import pytest

from asiarch.common.errors import InvalidArgument
from asiarch.researcher.dsl import DELTANET
from asiarch.researcher.proposer import deterministic_repair


@pytest.mark.parametrize(
    ("sizes", "reason"),
    [
        ([4] * 10_000, "at most 3 convolution scales, got 10000"),
        (list(range(100, 10_100)), "at most 3 convolution scales, got 10000"),
        ([4, 4], "conv sizes must be distinct, got [4, 4]"),
    ],
)
def test_conv_sizes_problems_are_short(sizes: list[int], reason: str) -> None:
    spec = json.dumps({**json.loads(DELTANET.model_dump_json()), "conv_sizes": sizes})
    with pytest.raises(InvalidArgument) as caught:
        deterministic_repair(spec, "the loss became NaN")
    assert caught.value.message.startswith("spec_json is not a valid spec")
    assert reason in caught.value.message and len(caught.value.message) < 200
