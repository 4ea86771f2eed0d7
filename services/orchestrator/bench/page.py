"""docs/discovery.md's generated section and the plot beside it, from the benchmark's numbers.

The section sits between `<!-- discovery:start -->` and `<!-- discovery:end -->` (asiarch.common.markdown):
a rerun replaces it and leaves the hand-written text around it alone. A page that does not exist yet is
started with a title and a line saying where its numbers come from. The plot is written next to the page
(`<page stem>-best.svg`) and linked from the section by its file name, so the page and the plot can move
together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asiarch.common.markdown import write_section
from asiarch.orchestrator.bench.numbers import (
    CONTROL,
    BenchRun,
    StrategyRow,
    best_by_cycle,
    headline,
    strategy_rows,
)
from asiarch.orchestrator.stats import CANDIDATES_BAR, RHO_BAR, Correlation, clears_bar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SECTION = "discovery"
NEW_PAGE = (
    "# How well does it discover?\n\n"
    "Measured by `asiarch bench discovery`; the section below is rewritten by each run of it.\n"
)


@dataclass(frozen=True)
class Setting:
    """What the section says about how the numbers were made."""

    command: str
    budget: str
    cycles: int
    runs: int
    cores: int
    date: str
    wall_seconds: float
    cpu_seconds: float | None


def strategy_table(rows: Sequence[StrategyRow]) -> list[str]:
    header = (
        "| strategy | valid rate | duplicate rate | best confirmed improvement | runs with one "
        "| confirmed / CPU-hour | wall s / cycle | outside the engineer | runs done |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        name = f"{row.strategy} (control)" if row.strategy == CONTROL else row.strategy
        partial = f" (+{row.started - row.done} partial)" if row.started > row.done else ""
        cells = [
            name,
            _percent(row, "valid_rate"),
            _percent(row, "duplicate_rate"),
            row["best"].text(".4g"),
            f"{row.found}/{row.done}",
            row["confirmed_per_cpu_hour"].text(".3g"),
            row["wall_per_cycle"].text(".0f"),
            _percent(row, "outside_engineer"),
            f"{row.done}{partial}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _percent(row: StrategyRow, name: str) -> str:
    value = row[name]
    if value.mean is None:
        return "–"
    return f"{value.mean:.0%}" + (f" ± {value.sd:.0%}" if value.sd is not None else "")


def proxy_table(correlations: Mapping[str, Correlation]) -> list[str]:
    """ρ of each proxy (asiarch.orchestrator.stats: signed so that > 0 means the proxy points the right
    way) and whether the loop's proxy filter may trust it."""
    if not correlations:
        return ["No experiment of the benchmark at this budget recorded a zero-cost proxy."]
    lines = [
        "| proxy | ρ vs rung-1 val_loss | ρ vs mean MQAR | n "
        f"| clears the bar (ρ ≥ {RHO_BAR} on n ≥ {CANDIDATES_BAR}) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, found in sorted(correlations.items()):
        lines.append(
            f"| {name} | {_rho(found.rho_loss)} | {_rho(found.rho_mqar)} | {found.n} "
            f"| {'yes' if clears_bar(found) else 'no'} |"
        )
    return lines


def _rho(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def section(
    setting: Setting,
    runs: Sequence[BenchRun],
    strategies: Sequence[str],
    proxies: Mapping[str, Correlation],
    plot: str,
) -> str:
    rows = strategy_rows(runs, strategies, setting.cycles)
    cpu = "unknown" if setting.cpu_seconds is None else f"{setting.cpu_seconds / 3600:.2f} h"
    return "\n".join(
        [
            f"### {', '.join(strategies)}: {setting.runs} run(s) × {setting.cycles} cycle(s), "
            f"budget `{setting.budget}`",
            "",
            f"`{setting.command}` on {setting.cores} cores, {setting.date}; "
            f"{setting.wall_seconds / 3600:.2f} h wall and {cpu} CPU in the runs "
            "(baselines and services included).",
            "",
            f"**{headline(rows)}**",
            "",
            *strategy_table(rows),
            "",
            "Means ± sd over each strategy's finished runs; run r*i* has the same seed for every "
            "strategy. Valid rate: new candidates' evaluations that succeeded. Duplicate rate: proposals "
            "that repeated a design the run had. Best confirmed improvement: the largest mean paired "
            "val_loss improvement over the strongest baseline (baseline − candidate, nats per token) of a "
            "design confirmed on paired seeds, 0 for a run without one. Confirmed / CPU-hour: confirmed "
            "designs per hour of CPU of the loop and its services. Outside the engineer: the share of a "
            "cycle's wall time not spent in Evaluate calls.",
            "",
            f"![best confirmed improvement by cycle]({plot})",
            "",
            "#### Zero-cost proxies",
            "",
            f"Spearman ρ over the benchmark's experiments trained at `{setting.budget}` (rung 1, replicates "
            "left out, one per distinct design: every run retrains the same baselines), signed so that "
            "ρ > 0 means the proxy points the right way (higher proxy, lower loss or higher MQAR). The "
            "loop's proxy filter acts only on a proxy that clears the bar.",
            "",
            *proxy_table(proxies),
            "",
        ]
    )


def best_plot(runs: Sequence[BenchRun], strategies: Sequence[str]) -> Figure:
    """Best confirmed improvement so far against the cycle, one line per strategy (mean over runs)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Best confirmed improvement over the strongest baseline (mean over runs)", loc="left")
    for i, strategy in enumerate(strategies):
        curve = best_by_cycle(runs, strategy)
        if curve:
            style = {"color": "0.3", "ls": "--"} if strategy == CONTROL else {"color": f"C{i}"}
            ax.step(range(1, len(curve) + 1), curve, where="post", lw=1.8, label=strategy, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a tick at 0.5 reads as a cycle that never ran
    ax.set_xlabel("cycle")
    ax.set_ylabel("val_loss below the baseline (nats/token)")
    ax.set_ylim(bottom=0)  # 0 is "none confirmed yet": no run's curve goes below it
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def write(
    out: Path,
    setting: Setting,
    runs: Sequence[BenchRun],
    strategies: Sequence[str],
    proxies: Mapping[str, Correlation],
) -> Path:
    """Write the plot beside `out` and the section into it; the plot's path."""
    from asiarch.orchestrator.results.plots import save

    plot = out.with_name(f"{out.stem}-best.svg")
    plot.parent.mkdir(parents=True, exist_ok=True)
    save(best_plot(runs, strategies), plot, "svg")
    if not out.exists():
        out.write_text(NEW_PAGE)
    write_section(out, SECTION, section(setting, runs, strategies, proxies, plot.name))
    return plot
