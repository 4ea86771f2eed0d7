"""`asiarch discover`: run the loop against running services or local ones it starts itself."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asiarch.common.cli import BUDGETS, LLM_BACKENDS, MODES, Choices, matching
from asiarch.common.devices import DEVICE_PATTERN, DEVICES
from asiarch.common.errors import ConfigError


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


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
    from contextlib import AsyncExitStack

    import grpc

    from asiarch.common.cli import llm_backend, proposal_mode
    from asiarch.common.client import open_channel
    from asiarch.common.config import load_settings
    from asiarch.common.logs import configure_logging
    from asiarch.orchestrator.access import read_run, write_run
    from asiarch.orchestrator.config import OrchestratorSettings, split_addresses
    from asiarch.orchestrator.local import SupervisedService
    from asiarch.orchestrator.loop import Discovery, Options, Stubs
    from asiarch.orchestrator.progress import RichDisplay
    from asiarch.v1 import analyst_pb2_grpc, engineer_pb2_grpc, researcher_pb2_grpc, selector_pb2_grpc

    settings = load_settings(OrchestratorSettings)
    analyst = args.analyst or settings.analyst_address
    selector = args.selector or settings.selector_address
    researcher = args.researcher or settings.researcher_address
    engineers = split_addresses(args.engineer) if args.engineer else settings.engineers
    check_strategy(args.strategy, selector)
    # The LLM of the services started here; a researcher given by address has its own, unknown here.
    llm = llm_backend(args.llm) if researcher is None or analyst is None else None
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
        device=args.device or "",
        seed=args.seed,
        parallel=args.parallel,
        promote=args.promote,
    )
    token = settings.token
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
            "seed": args.seed,
            "parallel": args.parallel,
        },
        "message": "",
    }
    metadata.setdefault("cycles_done", 0)

    def save(**changes: Any) -> None:
        metadata.update(changes, updated_at=datetime.now(UTC).isoformat())
        write_run(run_dir, metadata)

    base_env = {**os.environ, "ASIARCH_HOST": "127.0.0.1"}
    base_env.pop("ASIARCH_PORT", None)
    if llm is not None:
        base_env["ASIARCH_LLM_BACKEND"] = llm
    local: list[str] = []
    pids: dict[str, int] = {}
    save(local_services=local, local_pids=pids)

    async with AsyncExitStack() as stack:

        async def start(name: str, env: dict[str, str]) -> str:
            service = SupervisedService(name, {**base_env, **env}, run_dir / "logs")
            stack.push_async_callback(service.stop)
            await service.start()
            local.append(name)
            pids[name] = service.process.pid if service.process else 0
            display.note(f"started a local {name} on {service.address} (log: {run_dir / 'logs' / name}.log)")
            return service.address

        try:
            missing = [n for n, a in (("analyst", analyst), ("selector", selector)) if a is None]
            if missing:
                display.note(f"starting local {', '.join(missing)} …")
            started = await asyncio.gather(
                start("analyst", {"ASIARCH_RUN_DIR": str(run_dir)}) if analyst is None else _given(analyst),
                start("selector", {}) if selector is None else _given(selector),
            )
            analyst, selector = started
            if researcher is None:
                researcher = await start("researcher", {"ASIARCH_ANALYST_ADDRESS": analyst})
            if not engineers:
                engineers = [
                    await start(
                        "engineer",
                        {
                            "ASIARCH_RESEARCHER_ADDRESS": researcher,
                            "ASIARCH_ENGINEER_MAX_CONCURRENT": str(args.parallel),
                        },
                    )
                ]
            save(
                local_pids=pids,
                services={
                    "analyst": analyst,
                    "selector": selector,
                    "researcher": researcher,
                    "engineer": engineers,
                },
            )
            channels = {
                name: await stack.enter_async_context(open_channel(address, auth_token=token))
                for name, address in (
                    ("analyst", analyst),
                    ("selector", selector),
                    ("researcher", researcher),
                )
            }
            engineer_channels = [
                await stack.enter_async_context(open_channel(a, auth_token=token)) for a in engineers
            ]
            stubs = Stubs(
                selector=selector_pb2_grpc.SelectorStub(channels["selector"]),
                researcher=researcher_pb2_grpc.ResearcherStub(channels["researcher"]),
                engineers=[engineer_pb2_grpc.EngineerStub(c) for c in engineer_channels],
                analyst=analyst_pb2_grpc.AnalystStub(channels["analyst"]),
            )

            async def cycle_done(cycle: int, proposed: dict[str, int]) -> None:
                save(cycles_done=cycle, proposed=proposed)

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
        except (
            grpc.aio.AioRpcError,
            ValueError,
        ) as exc:  # a verdict (e.g. an unknown strategy): say it plainly
            message = (
                f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            )
            save(state="failed", message=message[:1000])
            print(f"asiarch discover: {message}", file=sys.stderr)
            return 1
        except Exception as exc:
            save(state="failed", message=f"{type(exc).__name__}: {exc}"[:1000])
            raise


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
