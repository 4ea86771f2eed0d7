"""`asiarch discover` (run the loop against running services or local ones it starts itself) and
`asiarch confirm` (the loop's confirmation of one design, by hand); the options `asiarch import asi-arch`
shares with them (`positive`, `add_budget`, `add_precision`, `add_engineers`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asiarch.common.cli import BUDGETS, LLM_BACKENDS, MODES, PRECISIONS, Choices, matching
from asiarch.common.devices import DEVICE_PATTERN, DEVICES
from asiarch.common.errors import ConfigError
from asiarch.orchestrator.config import DEFAULT_BUDGET, DEFAULT_CONFIRM_SEEDS, DEFAULT_MLFLOW_STORE, TRACKERS
from asiarch.orchestrator.stats import CANDIDATES_BAR, RHO_BAR

# A proxy's name as the engineer reports it (Metrics.proxies: common.proto lists them). Only its form is
# checked here: an engineer given by address may measure others, and one never reported leaves the
# filter off, saying so.
PROXY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")


class RunRecord:
    """run.json of the run being made: each change written at once, with the time of it."""

    def __init__(self, run_dir: Path, metadata: dict[str, Any]) -> None:
        self.run_dir, self.metadata = run_dir, metadata

    def save(self, **changes: Any) -> None:
        from asiarch.orchestrator.access import write_run

        self.metadata.update(changes, updated_at=datetime.now(UTC).isoformat())
        write_run(self.run_dir, self.metadata)

    async def cycle_done(self, cycle: int, proposed: dict[str, int]) -> None:
        self.save(cycles_done=cycle, proposed=proposed)


async def _discover(args: argparse.Namespace) -> int:
    from asiarch.common.config import load_settings
    from asiarch.common.logs import configure_logging
    from asiarch.orchestrator.access import choose_run_dir, read_run
    from asiarch.orchestrator.config import OrchestratorSettings

    settings = load_settings(OrchestratorSettings)
    llm, mode = _llm_and_mode(args, settings)
    configure_logging(settings.log_level, settings.log_format, service="discover")
    run_dir = choose_run_dir(args.run_dir, args.run_id, args.resume)
    previous = read_run(run_dir)
    if previous.metadata and not args.resume:
        print(
            f"asiarch discover: {run_dir} already holds run {previous.run_id!r}; "
            "add --resume to continue it or choose another --run-dir",
            file=sys.stderr,
        )
        return 2
    run_id = args.run_id or previous.run_id
    record = RunRecord(run_dir, _run_metadata(args, previous.metadata, run_id, llm, mode))
    return await _run_discovery(args, settings, record, llm, mode)


def _llm_and_mode(args: argparse.Namespace, settings: Any) -> tuple[str | None, str | None]:
    """The LLM backend of the services started here (None when none is: a researcher and analyst given by
    address have their own) and the proposal mode; refuses a strategy the local selector lacks."""
    from asiarch.common.cli import llm_backend, proposal_mode
    from asiarch.orchestrator.services import Addresses

    given = Addresses.given(args, settings)
    check_strategy(args.strategy, given.selector)
    llm = llm_backend(args.llm) if given.researcher is None or given.analyst is None else None
    return llm, proposal_mode(args.mode, llm if given.researcher is None else None)


def _run_metadata(
    args: argparse.Namespace, previous: dict[str, Any], run_id: str, llm: str | None, mode: str | None
) -> dict[str, Any]:
    """run.json at the start of this invocation (see asiarch.orchestrator.access): what a resumed run had,
    updated with what this one does."""
    metadata: dict[str, Any] = {
        **previous,
        "run_id": run_id,
        "state": "running",
        "pid": os.getpid(),
        "started_at": previous.get("started_at") or datetime.now(UTC).isoformat(),
        "cycles_planned": args.cycles,
        "time_budget_minutes": args.time_budget,
        # What this run does, defaults resolved: mode None is the researcher's own choice.
        "options": {
            "strategy": args.strategy,
            "mode": mode,
            "llm": llm,
            "budget": args.budget,
            "precision": args.precision,
            "seed": args.seed,
            "parallel": args.parallel,
            "confirm_seeds": args.confirm_seeds,
            "confirm_rung": args.confirm_rung,
            "proxy_filter": args.proxy_filter,
            "proxy": args.proxy,
            "self_heal": args.self_heal,
        },
        "message": "",
    }
    metadata.setdefault("cycles_done", 0)
    return metadata


async def _run_discovery(
    args: argparse.Namespace, settings: Any, record: RunRecord, llm: str | None, mode: str | None
) -> int:
    """The loop on the run's services, then the leaderboard and the report; run.json says how it ended."""
    from asiarch.orchestrator.loop import Discovery, Options
    from asiarch.orchestrator.progress import RichDisplay, RunProgress
    from asiarch.orchestrator.services import services
    from asiarch.orchestrator.tracking import live_tracking

    run_id, run_dir = record.metadata["run_id"], record.run_dir
    options = Options(
        run_id=run_id,
        cycles=args.cycles,
        time_budget_minutes=args.time_budget,
        strategy=args.strategy,
        mode=mode,
        budget=args.budget,
        precision=args.precision,
        device=args.device or "",
        seed=args.seed,
        parallel=args.parallel,
        promote=args.promote,
        confirm_seeds=args.confirm_seeds,
        confirm_rung=args.confirm_rung,
        run_dir=run_dir,
        proxy_filter=args.proxy_filter,
        proxy=args.proxy,
        self_heal=args.self_heal,
    )
    display = RichDisplay()
    try:
        async with services(args, settings, run_dir, llm, display, record.save) as (stubs, analyst):
            # The services started here are the ones whose CPU time each cycle's stats report.
            pids = tuple(pid for pid in record.metadata.get("local_pids", {}).values() if pid)
            options = dataclasses.replace(options, service_pids=pids)
            line = RunProgress(display, options)

            async def cycle_done(cycle: int, proposed: dict[str, int]) -> None:
                await record.cycle_done(cycle, proposed)
                await line.cycle_done(cycle, proposed)

            async with live_tracking(args.track, record.metadata, stubs, display, options) as tracking:
                with display:
                    shown, on_cycle = tracking.display(display), tracking.after_cycle(cycle_done)
                    ran = await Discovery(options, stubs, shown, on_cycle=on_cycle).run()
            display.note(f"run {run_id}: {ran} cycle(s) this time; results in {run_dir}")
            await _summarise(analyst, run_dir, display)
            record.save(state="finished")
            return 0
    except asyncio.CancelledError:
        record.save(state="stopped", message="interrupted; continue with --resume")
        raise
    except Exception as exc:
        if (verdict := verdict_of(exc)) is None:
            record.save(state="failed", message=f"{type(exc).__name__}: {exc}"[:1000])
            raise
        record.save(state="failed", message=verdict[:1000])
        print(f"asiarch discover: {verdict}", file=sys.stderr)
        return 1


def verdict_of(error: Exception) -> str | None:
    """What to tell the user of an error that is a verdict (a service's status, a value refused, e.g. an
    unknown strategy), said plainly; None for anything else (a bug: its traceback is shown)."""
    import grpc

    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) if isinstance(error, ValueError) else None


async def _confirm(args: argparse.Namespace) -> int:
    """`asiarch confirm ID`: the loop's confirmation, by hand, for one recorded experiment of a run, with
    the run's own budget and seed (run.json); replicates already recorded are not trained again."""
    import grpc

    from asiarch.common.config import load_settings
    from asiarch.common.logs import configure_logging
    from asiarch.orchestrator.config import OrchestratorSettings
    from asiarch.orchestrator.results.fetch import ResultsError

    settings = load_settings(OrchestratorSettings)
    configure_logging(settings.log_level, settings.log_format, service="confirm")
    run, refusal = _stopped_run(args.run_dir)
    if run is None:
        print(f"asiarch confirm: {refusal}", file=sys.stderr)
        return 2
    try:
        confirmed = await _confirm_on_local_services(args, settings, run)
    except (ResultsError, grpc.aio.AioRpcError, ValueError) as exc:
        print(f"asiarch confirm: {verdict_of(exc) or exc}", file=sys.stderr)
        return 1
    print(f"{confirmed.id} {confirmed.name}: {confirmed.confirmation.verdict}")
    return 0


def _stopped_run(given: Path | None) -> tuple[Any, str]:
    """The run to confirm in (--run-dir, else the latest; a run of `asiarch bench discovery` too), or None
    and why there is none to confirm in."""
    from asiarch.orchestrator.access import DEFAULT_RUNS, latest_run, read_run
    from asiarch.orchestrator.bench.runs import benchmark_run

    run_dir = given or latest_run(DEFAULT_RUNS)
    run = read_run(run_dir) if run_dir is not None else None
    if run is not None and not run.metadata:
        run = benchmark_run(run.run_dir)  # a benchmark's run: DIR/<strategy>/r<i>, no run.json
    if run is None or not run.metadata:
        return (
            None,
            f"no run in {run_dir or DEFAULT_RUNS} (no run.json, no benchmark's plan.json); give --run-dir",
        )
    if run.metadata.get("state") == "running":
        return None, f"run {run.run_id!r} is still running; confirm when it has stopped"
    return run, ""


async def _confirm_on_local_services(args: argparse.Namespace, settings: Any, run: Any) -> Any:
    """Confirm `args.id` against `args.against` (default: the baseline recorded with it) on an analyst
    and engineers started on the run directory, with the run's budget, precision and seed."""
    from asiarch.common.client import open_channel
    from asiarch.orchestrator.loop import Discovery, Options
    from asiarch.orchestrator.progress import RichDisplay
    from asiarch.orchestrator.results.fetch import find_experiment
    from asiarch.orchestrator.services import services

    recorded = run.metadata.get("options", {})
    options = Options(
        run_id=run.run_id,
        budget=recorded.get("budget", DEFAULT_BUDGET),
        precision=recorded.get("precision"),
        seed=int(recorded.get("seed", 0)),
        device=args.device or "",
        parallel=args.parallel,
        confirm_seeds=args.seeds,
    )

    def save(**changes: Any) -> None:
        """run.json stays the run's: the services started for a confirmation are not the run's."""

    display = RichDisplay()
    from asiarch.common.llm.factory import Backend  # not at the top: the parser loads no LLM layer

    no_llm = Backend.NONE.value  # confirm only evaluates and records: nothing to propose
    async with services(args, settings, run.run_dir, no_llm, display, save, evaluation_only=True) as (
        stubs,
        analyst,
    ):
        with display:
            discovery = Discovery(options, stubs, display)
            async with open_channel(analyst, auth_token=settings.token) as channel:
                experiment = await find_experiment(channel, run, args.id)
                against = (await find_experiment(channel, run, args.against)).id if args.against else ""
            return await discovery.confirm(experiment, against)


async def _summarise(analyst: str, run_dir: Path, display: Any) -> None:
    """The leaderboard and the report, printed and written while the run's analyst is still up."""
    from asiarch.orchestrator import summary

    await summary.print_and_report(analyst, run_dir, display.console)


def _strategies() -> list[str]:
    # The names the selector that `discover` starts itself (`asiarch serve selector`) offers, read from
    # its registry so that a typo fails before four services start. A selector given by address may be
    # another implementation: the loop asks it (ListStrategies) before any training instead.
    from asiarch.selector.strategies import list_strategies

    return [info.name for info in list_strategies()]


STRATEGIES = Choices(_strategies)


def check_strategy(strategy: str, selector_address: str | None) -> None:
    """Refuse, before anything starts, a strategy the local selector does not offer (ConfigError: exit 2)."""
    if selector_address is None and strategy not in STRATEGIES:
        raise ConfigError(
            f"argument --strategy: {strategy!r} is not a strategy of the local selector; valid: {STRATEGIES} "
            "(a selector given with --selector or ASIARCH_SELECTOR_ADDRESS may offer others)"
        )


def register(commands: argparse._SubParsersAction) -> None:
    _register_discover(commands)
    _register_confirm(commands)
    _register_export_runs(commands)


def _register_discover(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "discover",
        help="run the discovery loop (starts local services for any address not given)",
        description=(
            "Select parents, propose, evaluate (with self-healing) and record, cycle after cycle. "
            "Services come from --selector/--researcher/--engineer/--analyst or ASIARCH_*_ADDRESS; any "
            "not given is started locally on 127.0.0.1 with the embedded stores in the run directory, "
            "and stopped at the end. Every option is checked before anything starts."
        ),
    )
    _add_search_options(cmd)
    add_budget(cmd, "training budget: %(choices)s")
    add_precision(cmd, "numeric precision of every evaluation: %(choices)s (default: the budget preset's)")
    _add_training_options(cmd)
    cmd.add_argument(
        "--run-dir",
        type=Path,
        help="where the run lives (default: runs/<--run-id>, else runs/run-<UTC time>; "
        "with --resume the latest run under runs/)",
    )
    cmd.add_argument("--run-id", help="run id (default: the run directory's name)")
    cmd.add_argument(
        "--resume", action="store_true", help="continue the run in --run-dir (default: the latest)"
    )
    for name in ("selector", "researcher", "analyst"):
        cmd.add_argument(
            f"--{name}",
            help=f"host:port of the {name} (default: $ASIARCH_{name.upper()}_ADDRESS, else a local one)",
        )
    add_engineers(cmd)
    cmd.add_argument(
        "--track",
        choices=TRACKERS,
        help="log each experiment as it is recorded to MLflow ($MLFLOW_TRACKING_URI, else "
        f"sqlite:///./{DEFAULT_MLFLOW_STORE}); a tracking failure is a warning, the run goes on "
        "(default: off)",
    )
    cmd.set_defaults(run=lambda args: asyncio.run(_discover(args)))


def _add_search_options(cmd: argparse.ArgumentParser) -> None:
    """How long the search runs and how it proposes: cycles, time, strategy, mode, LLM."""
    cmd.add_argument("--cycles", type=positive(int), default=3, help="cycles of the run in total")
    cmd.add_argument(
        "--time-budget",
        type=positive(float),
        help="minutes; no new cycle starts after it (default: no limit)",
    )
    strategy = cmd.add_argument(
        "--strategy",
        metavar="NAME",
        default="asi-arch",
        help="parent selection; a selector given by address may offer others, the local one: %(offered)s",
    )
    strategy.offered = STRATEGIES  # type: ignore[attr-defined]  # read only when --help is printed
    cmd.add_argument(
        "--mode",
        choices=MODES,
        metavar="MODE",
        help="proposals as LLM code or DSL specs: %(choices)s (default: code with an LLM, dsl without; "
        "the researcher's choice when it is not started here)",
    )
    cmd.add_argument(
        "--llm",
        choices=LLM_BACKENDS,
        metavar="BACKEND",
        help="LLM backend of the local researcher and analyst: %(choices)s "
        "(default: $ASIARCH_LLM_BACKEND, else none)",
    )


def _add_training_options(cmd: argparse.ArgumentParser) -> None:
    """Where and how the candidates train: device, seed, parallel evaluations, promotion, confirmation."""
    cmd.add_argument(
        "--device",
        type=matching(DEVICE_PATTERN, DEVICES),
        help=f"torch device for evaluations: {DEVICES} (default: the engineer's)",
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of selection, proposals and training")
    cmd.add_argument(
        "--parallel", type=positive(int), default=1, help="evaluations at once (spread over --engineer)"
    )
    cmd.add_argument("--promote", action="store_true", help="train again, longer, what beats the best loss")
    cmd.add_argument(
        "--confirm-seeds",
        type=not_negative,
        default=DEFAULT_CONFIRM_SEEDS,
        metavar="K",
        help="a candidate that leads the strongest baseline beyond noise is re-trained with K paired seeds "
        "at --confirm-rung and tested (0: never)",
    )
    add_confirm_rung(cmd)
    cmd.add_argument(
        "--proxy-filter",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="check about N/(1-SHARE) proposals per cycle and skip the bottom SHARE by --proxy, only while "
        f"the proxy's Spearman rho against rung-1 loss is >= {RHO_BAR} on >= {CANDIDATES_BAR} of the run's "
        "candidates of the same budget (0 <= SHARE < 1; default 0: off)",
    )
    cmd.add_argument(
        "--proxy",
        type=matching(PROXY_PATTERN, "a proxy's name in lower case, e.g. loss_slope"),
        default="loss_slope",
        metavar="NAME",
        help="the zero-cost proxy --proxy-filter ranks by, as the engineer names it (default: %(default)s)",
    )
    cmd.add_argument(
        "--no-self-heal",
        dest="self_heal",
        action="store_false",
        help="record a proposal that fails its checks FAILED at once (no training slot, no repair) "
        "instead of sending it to the engineer's self-healing",
    )


def _register_confirm(commands: argparse._SubParsersAction) -> None:
    confirm = commands.add_parser(
        "confirm",
        help="re-train one design and the strongest baseline on paired seeds and test the difference",
        description=(
            "What discover does for a candidate that leads the strongest baseline in its exploratory run, by "
            "hand: train the design and a baseline with --seeds paired seeds (the run's budget at rung 2), "
            "record every replicate, and let the analyst test the paired losses (one-sided t, 95 %). "
            "Replicates already recorded are not trained again. Local services are started on the run "
            "directory; the run must not be running."
        ),
    )
    confirm.add_argument("id", help="experiment id, short id (as the leaderboard shows it) or name")
    confirm.add_argument(
        "--seeds", type=positive(int), default=DEFAULT_CONFIRM_SEEDS, metavar="K", help="paired seeds"
    )
    confirm.add_argument(
        "--against",
        metavar="ID",
        help="baseline to pair with (default: the strongest baseline when the design was recorded)",
    )
    confirm.add_argument(
        "--run-dir",
        type=Path,
        help="the run (default: the most recently updated run under runs/); a benchmark's run is "
        "BENCH_DIR/<strategy>/r<i>",
    )
    confirm.add_argument(
        "--device",
        type=matching(DEVICE_PATTERN, DEVICES),
        help=f"torch device: {DEVICES} (default: the engineer's)",
    )
    confirm.add_argument("--parallel", type=positive(int), default=1, help="evaluations at once")
    confirm.add_argument(
        "--engineer", action="append", help="host:port of an engineer (default: a local one)"
    )
    confirm.set_defaults(run=lambda args: asyncio.run(_confirm(args)))


def _register_export_runs(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "export-runs",
        help="log a run's experiments to an experiment tracker (MLflow)",
        description=(
            "Log every finished experiment of a run (replicates included) as one MLflow run, in an MLflow "
            f"experiment named after the run id, at $MLFLOW_TRACKING_URI (default: sqlite:///./"
            f"{DEFAULT_MLFLOW_STORE}). Again later, it logs only what is new or changed."
        ),
    )
    cmd.add_argument("tracker", choices=TRACKERS, help="the tracker: %(choices)s")
    cmd.add_argument(
        "run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="the run (default: the latest under runs/)"
    )
    cmd.add_argument(
        "--analyst",
        metavar="HOST:PORT",
        help="the run's analyst (default: a running discover's, else a local one on the run directory)",
    )

    def run(args: argparse.Namespace) -> int:
        from asiarch.orchestrator.tracking import export_command

        return asyncio.run(export_command(args))

    cmd.set_defaults(run=run)


# --- options `import asi-arch` shares ---


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: `kind(text)`, refused unless above 0."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_confirm_rung(cmd: argparse.ArgumentParser) -> None:
    from asiarch.orchestrator.config import CONFIRM_RUNGS, DEFAULT_CONFIRM_RUNG

    cmd.add_argument(
        "--confirm-rung",
        type=int,
        choices=CONFIRM_RUNGS,
        default=DEFAULT_CONFIRM_RUNG,
        help="the rung a confirmation's replicates train at: 2 trains them 4x longer, 1 repeats the "
        "exploratory training on new seeds (cheaper) (default: %(default)s)",
    )


def add_budget(cmd: argparse.ArgumentParser, help: str) -> None:
    cmd.add_argument("--budget", choices=BUDGETS, metavar="PRESET", default=DEFAULT_BUDGET, help=help)


def add_precision(cmd: argparse.ArgumentParser, help: str) -> None:
    cmd.add_argument("--precision", choices=PRECISIONS, metavar="P", help=help)


def add_engineers(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--engineer",
        action="append",
        help="host:port of an engineer, repeat for several "
        "(default: $ASIARCH_ENGINEER_ADDRESS, else a local one)",
    )
