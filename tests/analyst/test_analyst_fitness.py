"""ASI-Arch's fitness formula, the baseline choice and the deterministic judge."""

from __future__ import annotations

import math

import pytest
from analyst_data import experiment

from asiarch.analyst import fitness


def sigmoid6(x: float) -> float:
    return 1 / (1 + math.exp(-6 * x))


@pytest.mark.parametrize(
    ("loss", "base", "expected"),
    [
        (2.0, 2.0, 0.5),  # equal to the baseline: the middle
        (1.8, 2.0, sigmoid6(1.0)),  # 10 % better: the top of the unclipped band
        (1.9, 2.0, sigmoid6(0.5)),
        (1.0, 2.0, sigmoid6(1.0)),  # far better: clipped at +1
        (2.2, 2.0, sigmoid6(-1.0)),
        (9.0, 2.0, sigmoid6(-1.0)),  # far worse: clipped at -1
    ],
)
def test_loss_score(loss: float, base: float, expected: float) -> None:
    assert fitness.loss_score(loss, base) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("bench", "base", "expected"),
    [
        (0.5, 0.5, 0.5),
        (0.55, 0.5, sigmoid6(1.0)),
        (0.525, 0.5, sigmoid6(0.5)),
        (0.3, 0.5, sigmoid6(-1.0)),
        (0.2, 0.0, sigmoid6(1.0)),  # a zero baseline has no 10 % band: any gain counts fully
        (0.0, 0.0, 0.5),
    ],
)
def test_benchmark_score(bench: float, base: float, expected: float) -> None:
    assert fitness.benchmark_score(bench, base) == pytest.approx(expected)


def test_judge_score_is_the_weighted_mean_rescaled() -> None:
    assert fitness.judge_score(1, 1, 1) == pytest.approx(0.0)
    assert fitness.judge_score(10, 10, 10) == pytest.approx(1.0)
    # w = 0.3·8 + 0.25·4 + 0.45·6 = 6.1
    assert fitness.judge_score(8, 4, 6) == pytest.approx((6.1 - 1) / 9)


def test_total_is_the_sum_of_the_parts() -> None:
    child = experiment("child", loss=1.9, recall=(0.3, 0.2))
    base = experiment("deltanet", loss=2.0, recall=(0.2, 0.1), baseline=True)
    parts = fitness.measured_parts(child, base)
    judge = fitness.deterministic_judge(parts.loss, parts.benchmark, 0.4, 50_000, 50_000)
    result = fitness.compose(parts, judge, 0.4, base)
    assert result.loss_score == pytest.approx(sigmoid6(0.5))
    assert result.benchmark_score == pytest.approx(sigmoid6(1.0))  # 0.25 vs 0.15 is +67 %: clipped
    assert result.total == pytest.approx(result.loss_score + result.benchmark_score + result.judge_score)
    assert result.baseline_id == "deltanet"
    assert result.baseline_loss == 2.0 and result.baseline_benchmark == pytest.approx(0.15)
    assert 0 <= result.total <= 3


def test_without_a_baseline_the_measured_parts_are_neutral() -> None:
    parts = fitness.measured_parts(experiment("only", loss=1.5), None)
    assert parts.loss == pytest.approx(0.5) and parts.benchmark == pytest.approx(0.5)


def test_the_named_baseline_is_preferred_then_the_strongest_selectable_one() -> None:
    deltanet = experiment("deltanet", loss=2.2, baseline=True)
    linear = experiment("linear-attention", loss=2.6, baseline=True)
    softmax = experiment("softmax-attention", loss=1.5, baseline=True, reference_only=True)
    assert fitness.choose_baseline([linear, softmax, deltanet], "deltanet") is deltanet
    # No baseline of that name: the lowest loss among those that may be parents (not the reference).
    assert fitness.choose_baseline([linear, softmax, deltanet], "gated-deltanet") is deltanet
    assert fitness.choose_baseline([softmax], "gated-deltanet") is softmax
    assert fitness.choose_baseline([], "deltanet") is None


def test_deterministic_judge_rewards_results_novelty_and_parameter_efficiency() -> None:
    strong = fitness.deterministic_judge(0.9, 0.9, 0.8, 40_000, 50_000)
    weak = fitness.deterministic_judge(0.2, 0.3, 0.1, 200_000, 50_000)
    assert strong.performance == pytest.approx(1 + 9 * 0.9)
    assert strong.innovation == pytest.approx(1 + 9 * 0.8)
    assert strong.complexity == pytest.approx(10.0)  # fewer parameters than the baseline: capped at 10
    assert weak.complexity == pytest.approx(1 + 9 * 0.25)
    assert fitness.judge_score(
        strong.performance, strong.innovation, strong.complexity
    ) > fitness.judge_score(weak.performance, weak.innovation, weak.complexity)
    assert strong.judged_by.startswith("deterministic:")
    unknown = fitness.deterministic_judge(0.5, 0.5, 0.5, None, 50_000)
    assert unknown.complexity == pytest.approx(5.5)
