"""`asiarch discover`: run the loop against running services or local ones it starts itself."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asiarch.common.cli import BUDGETS, LLM_BACKENDS, MODES, PRECISIONS, Choices, matching
from asiarch.common.devices import DEVICE_PATTERN, DEVICES
from asiarch.common.errors import ConfigError
from asiarch.orchestrator.config import DEFAULT_CONFIRM_SEEDS, split_addresses


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _run_dir(args: argparse.Namespace) -> Path:
    from asiarch.orchestrator.access import DEFAULT_RUNS, latest_run

    if args.run_dir is not None:
        return args.run_dir
    if args.resume:
        latest = latest_run(DEFAULT_RUNS)
        if latest is None:
            raise SystemExit("asiarch discover --resume: no run under runs/ to resume; give --run-dir")
        return latest
    return DEFAULT_RUNS / (args.run_id or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S"))


async def _discover(args: argparse.Namespace) -> int:
    import grpc

    from asiarch.common.cli import llm_backend, proposal_mode
    from asiarch.common.config import load_settings
    from asiarch.common.logs import configure_logging
    from asiarch.orchestrator.access import read_run, write_run
    from asiarch.orchestrator.config import OrchestratorSettings
    from asiarch.orchestrator.loop import Discovery, Options
    from asiarch.orchestrator.progress import RichDisplay

    settings = load_settings(OrchestratorSettings)
    researcher = args.researcher or settings.researcher_address
    check_strategy(args.strategy, args.selector or settings.selector_address)
    # The LLM of the services started here; a researcher given by address has its own, unknown here.
    local_llm = researcher is None or (args.analyst or settings.analyst_address) is None
    llm = llm_backend(args.llm) if local_llm else None
    mode = proposal_mode(args.mode, llm if researcher is None else None)
    configure_logging(settings.log_level, settings.log_format, service="discover")
    run_dir = _run_dir(args)
    previous = read_run(run_dir)
    if previous.metadata and not args.resume:
        print(
            f"asiarch discover: {run_dir} already holds run {previous.run_id!r}; "
            "add --resume to continue it or choose another --run-dir",
            file=sys.stderr,
        )
        return 2
    run_id = args.run_id or previous.run_id
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
    )
    display = RichDisplay()
    metadata: dict[str, Any] = {
        **previous.metadata,
        "run_id": run_id,
        "state": "running",
        "pid": os.getpid(),
        "started_at": previous.metadata.get("started_at") or datetime.now(UTC).isoformat(),
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
        },
        "message": "",
    }
    metadata.setdefault("cycles_done", 0)

    def save(**changes: Any) -> None:
        metadata.update(changes, updated_at=datetime.now(UTC).isoformat())
        write_run(run_dir, metadata)

    async def cycle_done(cycle: int, proposed: dict[str, int]) -> None:
        save(cycles_done=cycle, proposed=proposed)

    try:
        async with _services(args, settings, run_dir, llm, display, save) as (stubs, analyst):
            with display:
                discovery = Discovery(options, stubs, display, on_cycle=cycle_done)
                ran = await discovery.run()
            display.note(f"run {run_id}: {ran} cycle(s) this time; results in {run_dir}")
            await _summarise(analyst, run_dir, display)
            save(state="finished")
            return 0
    except asyncio.CancelledError:
        save(state="stopped", message="interrupted; continue with --resume")
        raise
    except (grpc.aio.AioRpcError, ValueError) as exc:  # a verdict (e.g. an unknown strategy): say it plainly
        message = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        save(state="failed", message=message[:1000])
        print(f"asiarch discover: {message}", file=sys.stderr)
        return 1
    except Exception as exc:
        save(state="failed", message=f"{type(exc).__name__}: {exc}"[:1000])
        raise


async def _confirm(args: argparse.Namespace) -> int:
    """`asiarch confirm ID`: the loop's confirmation, by hand, for one recorded experiment of a run, with
    the run's own budget and seed (run.json); replicates already recorded are not trained again."""
    import grpc

    from asiarch.common.client import open_channel
    from asiarch.common.config import load_settings
    from asiarch.common.logs import configure_logging
    from asiarch.orchestrator.access import DEFAULT_RUNS, latest_run, read_run
    from asiarch.orchestrator.config import OrchestratorSettings
    from asiarch.orchestrator.loop import Discovery, Options
    from asiarch.orchestrator.progress import RichDisplay
    from asiarch.orchestrator.results.fetch import ResultsError, find_experiment

    settings = load_settings(OrchestratorSettings)
    configure_logging(settings.log_level, settings.log_format, service="confirm")
    run_dir = args.run_dir or latest_run(DEFAULT_RUNS)
    run = read_run(run_dir) if run_dir is not None else None
    if run is None or not run.metadata:
        print(
            f"asiarch confirm: no run in {run_dir or DEFAULT_RUNS} (no run.json); give --run-dir",
            file=sys.stderr,
        )
        return 2
    if run.metadata.get("state") == "running":
        print(
            f"asiarch confirm: run {run.run_id!r} is still running; confirm when it has stopped",
            file=sys.stderr,
        )
        return 2
    recorded = run.metadata.get("options", {})
    options = Options(
        run_id=run.run_id,
        budget=recorded.get("budget", "cpu"),
        precision=recorded.get("precision"),
        seed=int(recorded.get("seed", 0)),
        device=args.device or "",
        parallel=args.parallel,
        confirm_seeds=args.seeds,
    )

    def save(**changes: Any) -> None:
        """run.json stays the run's: the services started for a confirmation are not the run's."""

    args.parallel, args.analyst, args.selector, args.researcher = options.parallel, None, None, None
    display = RichDisplay()
    try:
        async with _services(args, settings, run_dir, "none", display, save, evaluation_only=True) as (
            stubs,
            analyst,
        ):
            with display:
                discovery = Discovery(options, stubs, display)
                async with open_channel(analyst, auth_token=settings.token) as channel:
                    experiment = await find_experiment(channel, run, args.id)
                    against = (await find_experiment(channel, run, args.against)).id if args.against else ""
                confirmed = await discovery.confirm(experiment, against)
    except ResultsError as exc:
        print(f"asiarch confirm: {exc}", file=sys.stderr)
        return 1
    except (grpc.aio.AioRpcError, ValueError) as exc:
        message = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        print(f"asiarch confirm: {message}", file=sys.stderr)
        return 1
    print(f"{confirmed.id} {confirmed.name}: {confirmed.confirmation.verdict}")
    return 0


@contextlib.asynccontextmanager
async def _services(
    args: argparse.Namespace,
    settings: Any,
    run_dir: Path,
    llm: str | None,
    display: Any,
    save: Callable[..., None],
    evaluation_only: bool = False,
) -> AsyncIterator[tuple[Any, str]]:
    """Stubs of the four services: those given by address, the others started here on 127.0.0.1 (and
    stopped when the block ends); yields the stubs and the analyst's address. `evaluation_only`: the
    analyst and engineers alone (the engineer is then never asked for repairs)."""
    from asiarch.common.client import open_channel
    from asiarch.orchestrator.local import SupervisedService
    from asiarch.orchestrator.loop import Stubs
    from asiarch.v1 import analyst_pb2_grpc, engineer_pb2_grpc, researcher_pb2_grpc, selector_pb2_grpc

    analyst = args.analyst or settings.analyst_address
    selector = args.selector or settings.selector_address
    researcher = args.researcher or settings.researcher_address
    engineers = split_addresses(args.engineer) if args.engineer else settings.engineers
    base_env = {**os.environ, "ASIARCH_HOST": "127.0.0.1"}
    base_env.pop("ASIARCH_PORT", None)
    if llm is not None:
        base_env["ASIARCH_LLM_BACKEND"] = llm
    local: list[str] = []
    pids: dict[str, int] = {}
    save(local_services=local, local_pids=pids)
    async with contextlib.AsyncExitStack() as stack:

        async def start(name: str, env: dict[str, str]) -> str:
            service = SupervisedService(name, {**base_env, **env}, run_dir / "logs")
            stack.push_async_callback(service.stop)
            await service.start()
            local.append(name)
            pids[name] = service.process.pid if service.process else 0
            display.note(f"started a local {name} on {service.address} (log: {run_dir / 'logs' / name}.log)")
            return service.address

        if evaluation_only:
            selector = researcher = ""  # neither is started, so no repair is ever asked for
        missing = [n for n, a in (("analyst", analyst), ("selector", selector)) if a is None]
        if missing:
            display.note(f"starting local {', '.join(missing)} …")
        analyst, selector = await asyncio.gather(
            start("analyst", {"ASIARCH_RUN_DIR": str(run_dir)}) if analyst is None else _given(analyst),
            start("selector", {}) if selector is None else _given(selector),
        )
        if researcher is None:
            researcher = await start("researcher", {"ASIARCH_ANALYST_ADDRESS": analyst})
        if not engineers:
            env = {"ASIARCH_ENGINEER_MAX_CONCURRENT": str(args.parallel)}
            if researcher:
                env["ASIARCH_RESEARCHER_ADDRESS"] = researcher
            engineers = [await start("engineer", env)]
        addresses = {
            "analyst": analyst,
            "selector": selector,
            "researcher": researcher,
            "engineer": engineers,
        }
        save(local_pids=pids, services=addresses)

        async def channel(address: str) -> Any:
            return await stack.enter_async_context(open_channel(address, auth_token=settings.token))

        yield (
            Stubs(
                selector=selector_pb2_grpc.SelectorStub(await channel(selector)) if selector else None,
                researcher=researcher_pb2_grpc.ResearcherStub(await channel(researcher))
                if researcher
                else None,
                engineers=[engineer_pb2_grpc.EngineerStub(await channel(a)) for a in engineers],
                analyst=analyst_pb2_grpc.AnalystStub(await channel(analyst)),
            ),
            analyst,
        )


async def _given(address: str) -> str:
    return address


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
    cmd.add_argument("--cycles", type=_positive(int), default=3, help="cycles of the run in total")
    cmd.add_argument(
        "--time-budget",
        type=_positive(float),
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
    cmd.add_argument(
        "--budget", choices=BUDGETS, metavar="PRESET", default="cpu", help="training budget: %(choices)s"
    )
    cmd.add_argument(
        "--precision",
        choices=PRECISIONS,
        metavar="P",
        help="numeric precision of every evaluation: %(choices)s (default: the budget preset's)",
    )
    cmd.add_argument(
        "--device",
        type=matching(DEVICE_PATTERN, DEVICES),
        help=f"torch device for evaluations: {DEVICES} (default: the engineer's)",
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of selection, proposals and training")
    cmd.add_argument(
        "--parallel", type=_positive(int), default=1, help="evaluations at once (spread over --engineer)"
    )
    cmd.add_argument("--promote", action="store_true", help="train again, longer, what beats the best loss")
    cmd.add_argument(
        "--confirm-seeds",
        type=_not_negative,
        default=DEFAULT_CONFIRM_SEEDS,
        metavar="K",
        help="a candidate that leads the strongest baseline beyond noise is re-trained with K paired seeds "
        "at rung 2 and tested (0: never)",
    )
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
    cmd.add_argument(
        "--engineer",
        action="append",
        help="host:port of an engineer, repeat for several "
        "(default: $ASIARCH_ENGINEER_ADDRESS, else a local one)",
    )
    cmd.set_defaults(run=lambda args: asyncio.run(_discover(args)))

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
        "--seeds", type=_positive(int), default=DEFAULT_CONFIRM_SEEDS, metavar="K", help="paired seeds"
    )
    confirm.add_argument(
        "--against",
        metavar="ID",
        help="baseline to pair with (default: the strongest baseline when the design was recorded)",
    )
    confirm.add_argument(
        "--run-dir", type=Path, help="the run (default: the most recently updated run under runs/)"
    )
    confirm.add_argument(
        "--device",
        type=matching(DEVICE_PATTERN, DEVICES),
        help=f"torch device: {DEVICES} (default: the engineer's)",
    )
    confirm.add_argument("--parallel", type=_positive(int), default=1, help="evaluations at once")
    confirm.add_argument(
        "--engineer", action="append", help="host:port of an engineer (default: a local one)"
    )
    confirm.set_defaults(run=lambda args: asyncio.run(_confirm(args)))
