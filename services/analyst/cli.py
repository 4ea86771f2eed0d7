"""`asiarch cognition search QUERY` and `asiarch bench analyst` (cheap to import: no torch here)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from asiarch.common.cli import command_group, output_path


@contextlib.asynccontextmanager
async def _analyst(address: str | None) -> AsyncIterator[str]:
    if address:
        yield address
        return
    from asiarch.common.local import local_service

    # A throw-away analyst holding only the shipped cognition base.
    with tempfile.TemporaryDirectory(prefix="asiarch-cognition-") as run_dir:
        async with local_service("analyst", env={"ASIARCH_RUN_DIR": run_dir}) as local:
            yield local


async def _search(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from asiarch.common.client import open_channel
    from asiarch.v1 import analyst_pb2, analyst_pb2_grpc

    request = analyst_pb2.RetrieveRequest(
        query=args.query, collections=[analyst_pb2.COLLECTION_COGNITION], k=args.k, min_score=args.min_score
    )
    token = os.environ.get("ASIARCH_AUTH_TOKEN") or None
    async with _analyst(args.analyst) as address, open_channel(address, auth_token=token) as channel:
        reply = await analyst_pb2_grpc.AnalystStub(channel).Retrieve(request, timeout=120)
    if args.json:
        print(json_format.MessageToJson(reply, preserving_proto_field_name=True))
        return 0
    if not reply.hits:
        print("no cognition entry matches", file=sys.stderr)
        return 1
    for rank, hit in enumerate(reply.hits, 1):
        print(f"{rank}. {hit.title}  [{hit.id}]  score {hit.score:.3f}")
        if args.full:
            print("   " + hit.text.replace("\n", "\n   "))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from asiarch.analyst import bench

    out = None if args.no_write else output_path(args.out, "benchmarks.md")
    command = "asiarch " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "asiarch bench analyst"
    text = bench.run(args.experiments, args.queries, out, command)
    print(text)
    if out is not None:
        print(f"written to {out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    cognition = commands.add_parser("cognition", help="search the cognition base")
    actions = cognition.add_subparsers(dest="action", required=True, metavar="ACTION")
    search = actions.add_parser("search", help="cognition entries nearest to a described symptom or idea")
    search.add_argument("query", help='e.g. "recall accuracy collapses on long sequences"')
    search.add_argument("--k", type=int, default=5, help="entries to show (1-100)")
    search.add_argument("--min-score", type=float, default=0.0, help="drop hits below this cosine similarity")
    search.add_argument(
        "--analyst",
        default=os.environ.get("ASIARCH_ANALYST_ADDRESS"),
        help="host:port of a running analyst (default: start a local one with the shipped entries)",
    )
    search.add_argument("--full", action="store_true", help="print each entry's text")
    search.add_argument("--json", action="store_true", help="print the RetrieveResponse as JSON")
    search.set_defaults(run=lambda args: asyncio.run(_search(args)))

    targets = command_group(commands, "bench", help="run benchmarks and write docs/benchmarks.md")
    analyst = targets.add_parser("analyst", help="Record throughput, Retrieve/ListExperiments latency")
    analyst.add_argument("--experiments", type=int, default=10_000, help="experiments in the store")
    analyst.add_argument("--queries", type=int, default=50, help="timed queries per RPC")
    analyst.add_argument(
        "--out",
        type=Path,
        help="markdown file to update (default: docs/benchmarks.md in the repository root, else a temp dir)",
    )
    analyst.add_argument("--no-write", action="store_true", help="print the table only")
    analyst.set_defaults(run=_bench)
