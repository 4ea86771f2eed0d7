"""The baselines page (`asiarch baselines`): every baseline's metrics over seeds, and the noise floor.

With one seed the table is the measurement; with several it is mean ± sample sd per metric, and the
pooled within-baseline sd of validation loss and of mean benchmark accuracy becomes the budget's noise
floor (`asiarch.common.noise`), which the fitness divides by.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asiarch.common import noise
from asiarch.v1 import common_pb2

Run = tuple[Any, float]  # (Evaluation, wall seconds)
SECTION = "## "
PAGE_HEAD = (
    "# Baselines\n\n"
    "Every run starts from these layers (`services/engineer/baselines/`); each budget's section is written "
    "by `asiarch baselines --budget NAME`, which replaces that section only. Chance on MQAR is "
    "2/vocabulary.\n"
)


def page(existing: str, section: str) -> str:
    """The baselines page with `section` (one budget's) added or replacing that budget's earlier one."""
    title = section.split("\n", 1)[0]
    kept = [
        SECTION + part
        for part in existing.split("\n" + SECTION)[1:]
        if (SECTION + part).split("\n", 1)[0] != title
    ]
    sections = sorted([*(k.rstrip("\n") + "\n" for k in kept), section])
    return PAGE_HEAD + "".join("\n" + s for s in sections)


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _cell(values: Sequence[float], digits: int) -> str:
    if not values:
        return ""
    mean, sd = noise.mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def _benchmark_mean(evaluation: common_pb2.Evaluation) -> float:
    scores = [b.score for b in evaluation.metrics.benchmarks]
    return statistics.fmean(scores) if scores else 0.0


@dataclass
class BaselineTable:
    budget: str
    seeds: Sequence[int]
    proposals: Sequence[common_pb2.Proposal]
    runs: Mapping[str, Sequence[Run]]

    @property
    def all_succeeded(self) -> bool:
        return all(
            r.status == common_pb2.EVALUATION_STATUS_SUCCEEDED for runs in self.runs.values() for r, _ in runs
        )

    def _succeeded(self, name: str) -> list[common_pb2.Evaluation]:
        return [r for r, _ in self.runs.get(name, []) if r.status == common_pb2.EVALUATION_STATUS_SUCCEEDED]

    def settings(self) -> list[str]:
        for runs in self.runs.values():
            for result, _ in runs:
                if result.metrics.benchmarks:
                    return [b.name for b in result.metrics.benchmarks]
        return []

    def noise_entry(self) -> dict[str, Any]:
        measured = {
            p.name: [(r.metrics.val_loss, _benchmark_mean(r)) for r in self._succeeded(p.name)]
            for p in self.proposals
        }
        return noise.summarise(self.budget, 1, measured, len(self.seeds))

    def markdown(self) -> str:
        settings = self.settings()
        seeds = (
            f"--seed {self.seeds[0]}"
            if len(self.seeds) == 1
            else f"--seed {self.seeds[0]} --seeds {len(self.seeds)}"
        )
        device = next((r.device for runs in self.runs.values() for r, _ in runs if r.device), "")
        lines = [
            f"{SECTION}{self.budget} budget",
            "",
            "Measured with "
            f"`asiarch baselines --budget {self.budget} {seeds}` on {platform.machine()} "
            f"({os.cpu_count()} cores), {device}"
            + (
                f": mean ± sample sd over {len(self.seeds)} seeds (model initialisation, data order and "
                "MQAR examples)."
                if len(self.seeds) > 1
                else "."
            ),
            "",
            "| baseline | runs | val loss (nats/byte) | "
            + " | ".join(settings)
            + " | MQAR mean | tokens/s | parameters | wall s |",
            "|---|---:|---:|" + "---:|" * len(settings) + "---:|---:|---:|---:|",
        ]
        for proposal in self.proposals:
            done = self._succeeded(proposal.name)
            name = proposal.name + (" (reference)" if proposal.reference_only else "")
            per_setting = [
                _cell([b.score for r in done for b in r.metrics.benchmarks if b.name == setting], 3)
                for setting in settings
            ]
            seconds = [s for _, s in self.runs.get(proposal.name, [])]
            lines.append(
                f"| {name} | {len(done)}/{len(seconds)} | {_cell([r.metrics.val_loss for r in done], 4)} | "
                + " | ".join(per_setting)
                + f" | {_cell([_benchmark_mean(r) for r in done], 3)} | "
                f"{_mean([r.metrics.tokens_per_second for r in done]):,.0f} | "
                f"{done[0].metrics.parameters if done else 0:,} | {_mean(seconds):.0f} |"
            )
        lines += ["", "Softmax attention is evaluated as a reference (quadratic, never a parent)."]
        if len(self.seeds) > 1 and self.all_succeeded:
            entry = self.noise_entry()
            lines += [
                "",
                f"**Noise floor of the {self.budget} budget** (sd within a baseline, pooled over the "
                f"baselines): validation loss {entry['val_loss_sd']:.4f} nats/byte, mean MQAR accuracy "
                f"{entry['benchmark_sd']:.4f}. The fitness counts a difference of twice these as one step "
                "(README, Fitness).",
            ]
        return "\n".join(lines) + "\n"
