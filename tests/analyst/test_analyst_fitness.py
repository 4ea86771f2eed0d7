"""The fitness formula (noise units against the reference), the ranking property, the judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analyst_data import experiment
from hypothesis import given, settings
from hypothesis import strategies as st

from asiarch.analyst import fitness
from asiarch.common import noise
from asiarch.v1 import common_pb2


def test_measured_parts_count_noise_steps_of_two_sd() -> None:
    assert fitness.loss_score(2.0, 2.0, 0.01) == 0.0
    assert fitness.loss_score(1.98, 2.0, 0.01) == pytest.approx(1.0)  # 2 sd better: one step
    assert fitness.loss_score(2.1, 2.0, 0.01) == pytest.approx(-5.0)
    assert fitness.benchmark_score(0.30, 0.20, 0.05) == pytest.approx(1.0)
    # An MQAR reference at chance does not saturate the term: a noise-sized gain is a noise-sized score.
    assert fitness.benchmark_score(0.004, 0.0, 0.02) == pytest.approx(0.1)


def test_judge_score_is_the_weighted_mean_rescaled() -> None:
    assert fitness.judge_score(1, 1, 1) == pytest.approx(0.0)
    assert fitness.judge_score(10, 10, 10) == pytest.approx(1.0)
    # w = 0.3·8 + 0.25·4 + 0.45·6 = 6.1
    assert fitness.judge_score(8, 4, 6) == pytest.approx((6.1 - 1) / 9)


def smoke(e: common_pb2.Experiment, preset: int = common_pb2.BUDGET_PRESET_SMOKE) -> common_pb2.Experiment:
    e.evaluation.budget.preset = preset
    e.evaluation.budget.rung = 1
    return e


def test_total_is_the_sum_of_the_parts_with_the_noise_it_used() -> None:
    child = smoke(experiment("child", loss=1.9, recall=(0.3, 0.2)))
    base = smoke(experiment("deltanet", loss=2.0, recall=(0.2, 0.1), baseline=True))
    parts = fitness.measured_parts(child, base)
    judge = fitness.deterministic_judge(parts.loss, parts.benchmark, 0.4, 50_000, 50_000)
    result = fitness.compose(parts, judge, 0.4, base)
    floor = noise.noise_floor("smoke", 1, 2.0)
    assert result.loss_noise_sd == pytest.approx(floor.val_loss_sd)
    assert result.benchmark_noise_sd == pytest.approx(floor.benchmark_sd)
    assert result.noise_floor == floor.source
    assert result.loss_score == pytest.approx(0.1 / (2 * floor.val_loss_sd))
    assert result.benchmark_score == pytest.approx(0.1 / (2 * floor.benchmark_sd))
    assert result.total == pytest.approx(result.loss_score + result.benchmark_score + result.judge_score)
    assert result.baseline_id == "deltanet"
    assert result.baseline_loss == 2.0 and result.baseline_benchmark == pytest.approx(0.15)


def test_an_unmeasured_budget_says_its_noise_is_assumed(tmp_path: Path) -> None:
    floor = noise.noise_floor("gpu", 1, 3.0, path=tmp_path / "none.json")
    assert floor.source.startswith("assumed:") and "never measured" in floor.source
    assert floor.val_loss_sd == pytest.approx(0.03) and floor.benchmark_sd == noise.ASSUMED_BENCHMARK_SD


def test_the_noise_floor_is_the_sd_within_baselines_pooled(tmp_path: Path) -> None:
    # Two baselines with different means: their spread must not count as noise.
    entry = noise.summarise("cpu", 1, {"a": [(2.0, 0.1), (2.02, 0.14)], "b": [(3.0, 0.5), (3.02, 0.54)]}, 2)
    assert entry["val_loss_sd"] == pytest.approx(0.0141421, rel=1e-4)
    assert entry["benchmark_sd"] == pytest.approx(0.0282843, rel=1e-4)
    path = tmp_path / "floor.json"
    noise.write_entry(entry, path)
    noise.write_entry({**entry, "preset": "smoke"}, path)
    assert set(json.loads(path.read_text())) == {"cpu/rung1", "smoke/rung1"}
    floor = noise.noise_floor("cpu", 1, 2.0, path=path)
    assert floor.source == "measured: cpu/rung1, 2 seeds x 2 baselines"
    assert floor.val_loss_sd == pytest.approx(0.0141421, rel=1e-4)


def test_without_a_reference_the_measured_parts_are_zero() -> None:
    parts = fitness.measured_parts(experiment("only", loss=1.5), None)
    assert parts.loss == 0.0 and parts.benchmark == 0.0


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
    strong = fitness.deterministic_judge(2.0, 1.0, 0.8, 40_000, 50_000)
    weak = fitness.deterministic_judge(-1.0, -0.5, 0.1, 200_000, 50_000)
    assert fitness.deterministic_judge(0.0, 0.0, 0.5, 1, 1).performance == pytest.approx(5.5)
    assert 5.5 < strong.performance <= 10 and 1 <= weak.performance < 5.5
    assert strong.innovation == pytest.approx(1 + 9 * 0.8)
    assert strong.complexity == pytest.approx(10.0)  # fewer parameters than the baseline: capped at 10
    assert weak.complexity == pytest.approx(1 + 9 * 0.25)
    assert fitness.judge_score(
        strong.performance, strong.innovation, strong.complexity
    ) > fitness.judge_score(weak.performance, weak.innovation, weak.complexity)
    assert strong.judged_by.startswith("deterministic:")
    unknown = fitness.deterministic_judge(0.5, 0.5, 0.5, None, 50_000)
    assert unknown.complexity == pytest.approx(5.5)


def test_rescoring_against_a_new_reference_keeps_an_llm_judge_and_redoes_the_deterministic_one() -> None:
    first = smoke(experiment("linear", loss=2.6, baseline=True))
    reference = smoke(experiment("deltanet", loss=2.2, baseline=True))
    child = smoke(experiment("c1", loss=2.0))
    child.fitness.CopyFrom(
        fitness.compose(
            fitness.measured_parts(child, first), fitness.deterministic_judge(0, 0, 0.5, 1, 1), 0.5, first
        )
    )
    again = fitness.rescored(child, reference)
    assert again.baseline_id == "deltanet" and again.baseline_loss == 2.2
    assert again.judge.performance != child.fitness.judge.performance
    child.fitness.judge.CopyFrom(
        common_pb2.JudgeScores(performance=9, innovation=9, complexity=9, judged_by="llm:tgi:x")
    )
    assert fitness.rescored(child, reference).judge.performance == 9


# --- the ranking property -------------------------------------------------------------------------

LOSS = st.floats(min_value=1.0, max_value=6.0)
ACCURACY = st.floats(min_value=0.0, max_value=1.0)
SCORE = st.floats(min_value=1.0, max_value=10.0)
NOVELTY = st.floats(min_value=0.0, max_value=1.0)
PARAMS = st.integers(min_value=1_000, max_value=10_000_000)


def scored(
    name: str,
    loss: float,
    accuracy: float,
    reference: common_pb2.Experiment,
    judge: tuple[float, float, float] | None,
    novelty: float,
    params: int,
    baseline: bool,
) -> common_pb2.Experiment:
    """Scored the way the analyst scores: an LLM judge's scores for candidates (any, within [1, 10]),
    the deterministic judge for baselines and when no LLM answers."""
    e = smoke(experiment(name, loss=loss, recall=(accuracy,), baseline=baseline, layer_parameters=params))
    parts = fitness.measured_parts(e, reference)
    scores = (
        common_pb2.JudgeScores(performance=judge[0], innovation=judge[1], complexity=judge[2])
        if judge is not None and not baseline
        else fitness.deterministic_judge(parts.loss, parts.benchmark, novelty, params, 50_000)
    )
    e.fitness.CopyFrom(fitness.compose(parts, scores, novelty, reference))
    return e


@settings(max_examples=400, deadline=None)
@given(
    reference=st.tuples(LOSS, ACCURACY),
    b=st.tuples(LOSS, ACCURACY),
    lead=st.tuples(st.floats(min_value=1.0001, max_value=50), st.floats(min_value=1.0001, max_value=50)),
    judges=st.tuples(st.none() | st.tuples(SCORE, SCORE, SCORE), st.none() | st.tuples(SCORE, SCORE, SCORE)),
    novelties=st.tuples(NOVELTY, NOVELTY),
    params=st.tuples(PARAMS, PARAMS),
    baselines=st.tuples(st.booleans(), st.booleans()),
)
def test_a_design_better_by_more_than_twice_the_noise_on_loss_and_recall_ranks_higher(
    reference: tuple[float, float],
    b: tuple[float, float],
    lead: tuple[float, float],
    judges: tuple,
    novelties: tuple[float, float],
    params: tuple[int, int],
    baselines: tuple[bool, bool],
) -> None:
    """A beats B on val_loss and on MQAR by more than 2 sd each (sd: the budget's noise floor): whatever
    the judge says, and whether either is a baseline, A's fitness is higher."""
    ref = smoke(experiment("ref", loss=reference[0], recall=(reference[1],), baseline=True))
    floor = noise.noise_floor("smoke", 1, reference[0])
    a_loss = b[0] - 2 * floor.val_loss_sd * lead[0]
    a_accuracy = b[1] + 2 * floor.benchmark_sd * lead[1]
    if a_loss <= 0 or a_accuracy > 1:
        return  # no such A exists for this B
    design_a = scored("a", a_loss, a_accuracy, ref, judges[0], novelties[0], params[0], baselines[0])
    design_b = scored("b", b[0], b[1], ref, judges[1], novelties[1], params[1], baselines[1])
    assert design_a.fitness.total > design_b.fitness.total
