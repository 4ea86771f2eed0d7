"""`asiarch bench kernels`: the command-line entry (no torch import until it runs).

Registered in the `asiarch.commands` entry-point group; every `asiarch`
invocation loads this module to build its parser, so it must stay cheap and
must work in images without torch (the selector's, for instance).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from asiarch.common.cli import command_group

DEFAULT_OUT = Path("docs/benchmarks.md")


def _run(args: argparse.Namespace) -> int:
    try:
        from asiarch.kernels import bench
    except ModuleNotFoundError as exc:
        print(f"asiarch bench kernels needs {exc.name!r}: pip install 'asiarch[bench]'", file=sys.stderr)
        return 2
    repeats = args.repeats or (2 if args.quick else 5)
    command = "asiarch " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "asiarch bench kernels"
    text = bench.run(args.device, args.quick, repeats, None if args.no_write else args.out, command)
    print(text)
    if not args.no_write:
        print(f"written to {args.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    targets = command_group(commands, "bench", help="run benchmarks and write docs/benchmarks.md")
    kernels = targets.add_parser("kernels", help="time the linear-attention kernels")
    kernels.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    kernels.add_argument("--quick", action="store_true", help="one shape, fewer repeats")
    kernels.add_argument(
        "--repeats", type=int, default=None, help="timed runs per entry (default 5, quick 2)"
    )
    kernels.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to update")
    kernels.add_argument("--no-write", action="store_true", help="print the table only")
    kernels.set_defaults(run=_run)
