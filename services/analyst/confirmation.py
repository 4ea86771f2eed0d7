"""Confirmation: does an exploratory result hold up on other seeds, paired with the strongest baseline?

The candidate and the baseline are re-trained on the same seeds (weights, data order, benchmarks) at
the next rung; each seed gives one pair. The paired improvement d = L_baseline − L_candidate is tested
one-sided with Student's t (scipy): a result is **confirmed** when p < 0.05 (equivalently, the 95 %
lower confidence bound of d is above zero) and the candidate's mean benchmark accuracy is not lower
than the baseline's by more than the budget's benchmark noise sd. Fewer than two pairs confirm nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats

from asiarch.analyst.fitness import mean_benchmark
from asiarch.v1 import common_pb2

ALPHA = 0.05
MIN_PAIRS = 2


def _by_seed(replicates: Sequence[common_pb2.Experiment], rung: int) -> dict[int, common_pb2.Experiment]:
    return {
        r.evaluation.budget.seed: r
        for r in replicates
        if r.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED
        and (r.evaluation.budget.rung or 1) == rung
        and r.evaluation.metrics.HasField("val_loss")
    }


def pairs(
    replicates: Sequence[common_pb2.Experiment], against: Sequence[common_pb2.Experiment], rung: int
) -> list[common_pb2.ReplicatePair]:
    """One pair per seed both sides measured at `rung`, in seed order."""
    mine, theirs = _by_seed(replicates, rung), _by_seed(against, rung)
    return [
        common_pb2.ReplicatePair(
            seed=seed,
            experiment_id=mine[seed].id,
            against_experiment_id=theirs[seed].id,
            val_loss=mine[seed].evaluation.metrics.val_loss,
            against_val_loss=theirs[seed].evaluation.metrics.val_loss,
            benchmark=mean_benchmark(mine[seed].evaluation.metrics) or 0.0,
            against_benchmark=mean_benchmark(theirs[seed].evaluation.metrics) or 0.0,
        )
        for seed in sorted(mine.keys() & theirs.keys())
    ]


def _one_sided(differences: Sequence[float]) -> tuple[float, float, float]:
    """(mean, one-sided 95 % lower bound, p-value) of the paired differences; p for mean > 0."""
    n = len(differences)
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences)
    if sd == 0:  # identical differences: certain in sign, no spread to test against
        return mean, mean, 0.0 if mean > 0 else 1.0
    error = sd / math.sqrt(n)
    t = mean / error
    return mean, mean - float(stats.t.ppf(1 - ALPHA, n - 1)) * error, float(stats.t.sf(t, n - 1))


def confirm(
    matched: Sequence[common_pb2.ReplicatePair],
    against: common_pb2.Experiment,
    rung: int,
    benchmark_noise_sd: float,
) -> common_pb2.Confirmation:
    result = common_pb2.Confirmation(
        against_id=against.id, against_name=against.name or against.proposal.name, rung=rung, pairs=matched
    )
    name = result.against_name
    if len(matched) < MIN_PAIRS:
        result.verdict = (
            f"not confirmed: {len(matched)} seed(s) measured on both sides at rung {rung}; "
            f"a paired test needs at least {MIN_PAIRS}"
        )
        result.p_value = 1.0
        return result
    losses = [p.val_loss for p in matched]
    rivals = [p.against_val_loss for p in matched]
    result.val_loss_mean, result.val_loss_sd = statistics.fmean(losses), statistics.stdev(losses)
    result.against_val_loss_mean, result.against_val_loss_sd = (
        statistics.fmean(rivals),
        statistics.stdev(rivals),
    )
    mean, lower, p = _one_sided([p.against_val_loss - p.val_loss for p in matched])
    result.improvement_mean, result.improvement_lower_95, result.p_value = mean, lower, p
    result.benchmark_delta_mean = statistics.fmean(p.benchmark - p.against_benchmark for p in matched)
    summary = (
        f"val_loss {result.val_loss_mean:.4f} ± {result.val_loss_sd:.4f} against {name}'s "
        f"{result.against_val_loss_mean:.4f} ± {result.against_val_loss_sd:.4f} over {len(matched)} paired "
        f"seeds at rung {rung}: improvement {mean:+.4f} (95 % lower bound {lower:+.4f}, "
        f"one-sided p = {p:.3g}), benchmark {result.benchmark_delta_mean:+.3f}"
    )
    if p >= ALPHA:
        result.verdict = f"not confirmed: {summary}; the improvement is within the seed-to-seed noise"
    elif result.benchmark_delta_mean < -benchmark_noise_sd:
        result.verdict = (
            f"not confirmed: {summary}; benchmark accuracy is lower by more than its noise sd "
            f"{benchmark_noise_sd:.3f}"
        )
    else:
        result.confirmed = True
        result.verdict = f"confirmed: {summary}"
    return result
