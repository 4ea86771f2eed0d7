"""`asiarch bench kernels`: the command-line entry (no torch import until it runs).

Registered in the `asiarch.commands` entry-point group; every `asiarch`
invocation loads this module to build its parser, so it must stay cheap and
must work in images without torch (the selector's, for instance).

The table is written only where `--out` says. Without `--out` it goes to
docs/benchmarks.md when run from this repository's root (the page the
numbers belong to), and otherwise to a new temporary folder, so that running
the benchmark elsewhere never writes into someone else's `docs/`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from asiarch.common.cli import command_group, output_path


def _run(args: argparse.Namespace) -> int:
    try:
        from asiarch.kernels import bench
    except ModuleNotFoundError as exc:
        print(f"asiarch bench kernels needs {exc.name!r}: pip install 'asiarch[bench]'", file=sys.stderr)
        return 2
    repeats = args.repeats or (2 if args.quick else 5)
    command = "asiarch " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "asiarch bench kernels"
    out = None if args.no_write else output_path(args.out, "benchmarks.md")

    # Each row as it is measured (the whole table takes minutes), then the table.
    def say(row: bench.Row) -> None:
        print(bench.row_line(row), flush=True)

    text = bench.run(args.device, args.quick, repeats, out, command, say)
    print(text)
    if out is not None:
        print(f"written to {out.resolve()}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    targets = command_group(commands, "bench", help="run benchmarks and write docs/benchmarks.md")
    kernels = targets.add_parser("kernels", help="time the linear-attention kernels")
    kernels.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the kernels run")
    kernels.add_argument("--quick", action="store_true", help="one shape, fewer repeats")
    kernels.add_argument(
        "--repeats", type=int, default=None, help="timed runs per entry (default 5, quick 2)"
    )
    kernels.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown file to update (default: docs/benchmarks.md in the asiarch repository's root, "
        "else a new temporary folder)",
    )
    kernels.add_argument("--no-write", action="store_true", help="print the table only")
    kernels.set_defaults(run=_run)
