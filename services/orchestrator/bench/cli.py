"""`asiarch bench discovery`: how well each selection strategy discovers, against a random control.

Every option is checked before anything starts (strategies against the local selector, the bench
directory's name against the contract's id rule, the options against a benchmark already in that
directory). The page (docs/discovery.md from the repository root, else --out or a temporary folder) and its
plot are rewritten after every run, so a stopped benchmark leaves a page of what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asiarch.common.cli import LLM_BACKENDS, command_group, output_path

DEFAULT_BUDGET = "smoke"  # the real benchmark's budget is chosen when it is run (docs/discovery.md)
DEFAULT_DIR = Path("runs/bench-discovery")


def _default_strategies() -> list[str]:
    """Every strategy of the local selector, the random control last."""
    from asiarch.orchestrator.bench.numbers import CONTROL
    from asiarch.orchestrator.cli import STRATEGIES

    return [s for s in STRATEGIES if s != CONTROL] + [s for s in STRATEGIES if s == CONTROL]


def _strategies(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a comma-separated list of distinct strategies, got {text!r}")
    return names


def plan_of(args: argparse.Namespace) -> Any:
    """The benchmark's Plan; refuses a strategy the local selector lacks (ConfigError)."""
    from asiarch.common.cli import proposal_mode
    from asiarch.common.config import load_settings
    from asiarch.orchestrator.bench.runs import Plan
    from asiarch.orchestrator.cli import check_strategy
    from asiarch.orchestrator.config import OrchestratorSettings

    strategies = args.strategies or _default_strategies()
    selector = load_settings(OrchestratorSettings).selector_address
    for strategy in strategies:
        check_strategy(strategy, selector)
    return Plan(
        bench_dir=args.bench_dir,
        strategies=tuple(strategies),
        runs=args.runs,
        cycles=args.cycles,
        budget=args.budget,
        parallel=args.parallel,
        confirm_seeds=args.confirm_seeds,
        confirm_rung=args.confirm_rung,
        seed=args.seed,
        llm=args.llm,
        mode=proposal_mode(None, args.llm),
    )


def command_of(plan: Any) -> str:
    """The command that makes this benchmark, every option spelled out."""
    return "asiarch bench discovery " + shlex.join(
        [
            f"--strategies={','.join(plan.strategies)}",
            f"--runs={plan.runs}",
            f"--cycles={plan.cycles}",
            f"--budget={plan.budget}",
            f"--parallel={plan.parallel}",
            f"--confirm-seeds={plan.confirm_seeds}",
            f"--confirm-rung={plan.confirm_rung}",
            f"--seed={plan.seed}",
            f"--llm={plan.llm}",
            f"--bench-dir={plan.bench_dir}",
        ]
    )


async def write_page(plan: Any, out: Path, stubs: Any) -> Path:
    """docs/discovery.md and its plot from every run so far and every experiment in the analyst."""
    from asiarch.orchestrator.bench import page
    from asiarch.orchestrator.bench.runs import RunDisplay, collect
    from asiarch.orchestrator.loop import Discovery, Options
    from asiarch.orchestrator.stats import proxy_correlations

    runs = collect(plan)
    cpus = [r.whole_cpu_seconds for r in runs]
    setting = page.Setting(
        command=command_of(plan),
        budget=plan.budget,
        cycles=plan.cycles,
        runs=plan.runs,
        cores=os.cpu_count() or 0,
        date=datetime.now(UTC).date().isoformat(),
        wall_seconds=sum(r.whole_wall_seconds for r in runs),
        cpu_seconds=None if None in cpus else sum(c for c in cpus if c is not None),
    )
    # run_id "" lists every run's experiments: the proxies are measured over the whole benchmark.
    experiments = distinct_designs(await Discovery(Options(run_id=""), stubs, RunDisplay()).experiments())
    return page.write(out, setting, runs, plan.strategies, proxy_correlations(experiments, plan.budget))


def distinct_designs(experiments: list[Any]) -> list[Any]:
    """One experiment per design, a succeeded one where there is one (the first recorded): every run
    trains the same baselines, which would otherwise count once per run towards a proxy's n."""
    from asiarch.orchestrator.loop import design_key
    from asiarch.v1 import common_pb2

    kept: dict[str, Any] = {}
    for experiment in sorted(experiments, key=lambda e: e.status != common_pb2.EXPERIMENT_STATUS_SUCCEEDED):
        kept.setdefault(design_key(experiment.proposal), experiment)
    return list(kept.values())


async def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asiarch.orchestrator.bench.runs import run_all
    from asiarch.orchestrator.cli import verdict_of

    plan = plan_of(args)
    plan.check()
    out = output_path(args.out, "discovery.md")
    console = Console(soft_wrap=True)
    console.print(f"benchmark {plan.bench_id}: {len(plan.order())} run(s) in {plan.bench_dir}; page: {out}")

    async def after_run(stubs: Any) -> None:
        await write_page(plan, out, stubs)

    try:
        await run_all(plan, args, console, after_run)
    except Exception as exc:
        if (verdict := verdict_of(exc)) is None:
            raise  # a bug: its traceback is shown
        print(f"asiarch bench discovery: {verdict}; run the same command again to continue", file=sys.stderr)
        return 1
    console.print(f"written to {out} and {out.with_name(out.stem + '-best.svg')}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from asiarch.orchestrator.cli import add_budget, add_confirm_rung, not_negative, positive
    from asiarch.orchestrator.config import DEFAULT_CONFIRM_SEEDS

    targets = command_group(commands, "bench", help="run benchmarks and write docs/benchmarks.md")
    cmd = targets.add_parser(
        "discovery",
        help="R runs per strategy and a random control; writes docs/discovery.md",
        description=(
            "R paired runs (seeds --seed, --seed+1, …) of every strategy for a fixed number of cycles, on "
            "services started once; per strategy the valid and duplicate rates, the best confirmed "
            "improvement over the strongest baseline, confirmed improvements per CPU-hour, wall time per "
            "cycle and the share outside the engineer, and ρ of each zero-cost proxy. Running it again "
            "continues where it stopped."
        ),
    )
    cmd.add_argument(
        "--strategies",
        type=_strategies,
        metavar="A,B,…",
        help="strategies to compare (default: every strategy of the local selector, random last)",
    )
    cmd.add_argument("--runs", type=positive(int), default=3, help="runs per strategy")
    cmd.add_argument("--cycles", type=positive(int), default=12, help="cycles per run")
    add_budget(cmd, "training budget of every run: %(choices)s")
    cmd.set_defaults(budget=DEFAULT_BUDGET)
    cmd.add_argument("--parallel", type=positive(int), default=1, help="evaluations at once")
    cmd.add_argument(
        "--confirm-seeds",
        type=not_negative,
        default=DEFAULT_CONFIRM_SEEDS,
        metavar="K",
        help="as discover's",
    )
    add_confirm_rung(cmd)
    cmd.add_argument("--seed", type=int, default=0, help="seed of run r0; run ri has seed + i")
    cmd.add_argument(
        "--llm",
        choices=LLM_BACKENDS,
        metavar="BACKEND",
        default="none",
        help="LLM backend of the local researcher and analyst: %(choices)s (the environment's is not read: "
        "a benchmark says what it ran with)",
    )
    cmd.add_argument("--bench-dir", type=Path, default=DEFAULT_DIR, help="where the runs and the store live")
    cmd.add_argument(
        "--page-only",
        action="store_true",
        help="run nothing: write the page from the runs measured so far (a benchmark stopped midway)",
    )
    cmd.add_argument(
        "--out",
        type=Path,
        help="page to write (default: docs/discovery.md in the repository root, else a temp dir)",
    )
    cmd.set_defaults(run=lambda args: asyncio.run(_bench(args)))
