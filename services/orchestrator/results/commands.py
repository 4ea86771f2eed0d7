"""The results commands: leaderboard, show, lineage, report, export, status.

Registered through the `asiarch.commands` entry-point group. Cheap to import: rich,
matplotlib and the gRPC stubs load inside the commands, never at `asiarch --help`.
Every command reads the run through the Analyst API (`access.analyst_channel`): the
given --analyst, a running discover's analyst, or a local one on the run's stores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
REFERENCE_HELP = (
    "the experiment: its id (the leaderboard's id column), its name, or a unique prefix of either"
)


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from asiarch.common.errors import ServiceError

        from .export import ExportError
        from .fetch import ResultsError

        try:
            return asyncio.run(command(args))
        except (ResultsError, ExportError, ServiceError) as exc:
            print(f"asiarch {args.command}: {exc}", file=sys.stderr)
            return 1

    return run


async def _leaderboard(args: argparse.Namespace) -> int:
    from . import summary as s
    from .fetch import load_run, resolve_run_dir
    from .tables import console, leaderboard_table

    data = await load_run(resolve_run_dir(args.run_dir), args.analyst)
    ranked = s.ranked(data.experiments, include_all=args.all)
    rows = [s.leaderboard_row(i, e, data.names) for i, e in enumerate(ranked, 1)]
    shown = rows[: args.top] if args.top > 0 else rows
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    out = console()
    out.print(leaderboard_table(shown, f"Leaderboard of run {data.info.run_id}"))
    hidden = "" if args.all else "; --all adds failed and reference-only designs"
    out.print(f"{len(shown)} of {len(rows)} ranked ({len(data.experiments)} experiments in the run{hidden})")
    out.print(f"finding: {s.verdict(data.experiments)}")
    return 0


async def _show(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from .fetch import load_with_names, resolve_run_dir
    from .tables import console, show_renderables

    experiment, names = await load_with_names(resolve_run_dir(args.run_dir), args.analyst, args.id)
    if args.json:
        print(json_format.MessageToJson(experiment, preserving_proto_field_name=True))
        return 0
    out = console()
    for part in show_renderables(experiment, names):
        out.print(part)
    return 0


def _figure_format(out: Path, given: str | None) -> str:
    from asiarch.common.errors import ConfigError

    fmt = given or out.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ConfigError(
            f"cannot tell the image format of {str(out)!r}: use a .svg or .png name or --format"
        )
    return fmt


async def _lineage(args: argparse.Namespace) -> int:
    from . import lineage, plots
    from .fetch import load_run, resolve_run_dir
    from .progress import spinner

    fmt = _figure_format(args.out, args.format)
    data = await load_run(resolve_run_dir(args.run_dir), args.analyst)
    with spinner(f"drawing the evolution tree of {len(data.experiments)} experiments…"):
        figure = lineage.draw(data.experiments, f"Evolution tree of run {data.info.run_id}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plots.save(figure, args.out, fmt)
    print(args.out)
    return 0


async def _report(args: argparse.Namespace) -> int:
    from . import report
    from .fetch import load_run, resolve_run_dir
    from .progress import spinner

    run_dir = resolve_run_dir(args.run_dir)
    data = await load_run(run_dir, args.analyst)
    with spinner(f"drawing the report's figures ({len(data.experiments)} experiments)…"):
        written = report.write(data, args.out or run_dir / "report.html")
    print(written)
    return 0


async def _export(args: argparse.Namespace) -> int:
    from .export import standalone_source
    from .fetch import load_experiment, resolve_run_dir

    experiment = await load_experiment(resolve_run_dir(args.run_dir), args.analyst, args.id)
    text = standalone_source(experiment)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {experiment.name} ({experiment.id}); run it with `python {args.out}`")
    return 0


async def _status(args: argparse.Namespace) -> int:
    from . import status
    from .fetch import resolve_run_dir
    from .tables import console

    result = await status.gather(resolve_run_dir(args.run_dir), args.analyst, args.local)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        console().print(status.render(result))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir", type=Path, help="the run directory (default: the most recently updated run under runs/)"
    )
    parser.add_argument(
        "--analyst",
        metavar="HOST:PORT",
        help="the run's analyst (default: ASIARCH_ANALYST_ADDRESS, a running discover's analyst from "
        "run.json, else a local analyst started on the run directory)",
    )


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("leaderboard", help="the run's designs ranked by fitness")
    _common(cmd)
    cmd.add_argument("--top", type=int, default=20, help="rows to show; 0 = all (default 20)")
    cmd.add_argument("--all", action="store_true", help="also failed, pending and reference-only experiments")
    cmd.add_argument("--json", action="store_true", help="print the rows as JSON")
    cmd.set_defaults(run=_run(_leaderboard))

    cmd = commands.add_parser("show", help="everything about one experiment: code, metrics, checks, analysis")
    _common(cmd)
    cmd.add_argument("id", help=REFERENCE_HELP)
    cmd.add_argument("--json", action="store_true", help="print the Experiment as JSON")
    cmd.set_defaults(run=_run(_show))

    cmd = commands.add_parser("lineage", help="draw the run's evolution tree (SVG or PNG)")
    _common(cmd)
    cmd.add_argument("--out", type=Path, required=True, help="image file to write, e.g. lineage.svg")
    cmd.add_argument("--format", choices=("svg", "png"), help="default: from the --out suffix")
    cmd.set_defaults(run=_run(_lineage))

    cmd = commands.add_parser("report", help="write a self-contained HTML report of the run")
    _common(cmd)
    cmd.add_argument("--out", type=Path, help="HTML file to write (default: RUN_DIR/report.html)")
    cmd.set_defaults(run=_run(_report))

    cmd = commands.add_parser("export", help="one design as a standalone PyTorch file (no asiarch needed)")
    _common(cmd)
    cmd.add_argument("id", help=REFERENCE_HELP)
    cmd.add_argument("--out", type=Path, help="Python file to write (default: print it)")
    cmd.set_defaults(run=_run(_export))

    cmd = commands.add_parser("status", help="the state of a run (run.json, and its analyst when reachable)")
    _common(cmd)
    cmd.add_argument(
        "--local", action="store_true", help="start a local analyst when none is running (slower)"
    )
    cmd.add_argument("--json", action="store_true", help="print the status as JSON")
    cmd.set_defaults(run=_run(_status))
