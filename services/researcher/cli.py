"""`asiarch propose --parent FILE`: ask a researcher (or a local one) for the next candidate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from asiarch.common.cli import LLM_BACKENDS, MODES, llm_backend, proposal_mode, proposal_mode_value


@contextlib.asynccontextmanager
async def _researcher(address: str | None, llm: str | None) -> AsyncIterator[str]:
    if address:
        yield address
        return
    from asiarch.common.local import local_service

    env = {"ASIARCH_LLM_BACKEND": llm} if llm else {}
    async with local_service("researcher", env=env) as local:
        yield local


async def _propose(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from asiarch.common.client import open_channel
    from asiarch.v1 import common_pb2, researcher_pb2, researcher_pb2_grpc

    parent = common_pb2.Experiment(
        id="cli-parent",
        name=args.parent.stem.replace("_", "-"),
        proposal=common_pb2.Proposal(
            name=args.parent.stem.replace("_", "-"),
            source=common_pb2.ArchitectureSource(module_source=args.parent.read_text()),
        ),
    )
    # A local researcher's LLM is known here; one given by address has its own.
    llm = None if args.researcher else llm_backend(args.llm)
    mode = proposal_mode(args.mode, llm)
    request = researcher_pb2.ProposeRequest(parent=parent, mode=proposal_mode_value(mode), seed=args.seed)
    token = os.environ.get("ASIARCH_AUTH_TOKEN") or None
    async with (
        _researcher(args.researcher, llm) as address,
        open_channel(address, auth_token=token) as channel,
    ):
        reply = await researcher_pb2_grpc.ResearcherStub(channel).Propose(request, timeout=900)
    if args.json:
        print(json_format.MessageToJson(reply, preserving_proto_field_name=True))
        return 0
    proposal = reply.proposal
    print(f"# {proposal.name}  ({common_pb2.ProposalOrigin.Name(proposal.origin)}, {proposal.generator})")
    if reply.fallback_reason:
        print(f"# fallback: {reply.fallback_reason}", file=sys.stderr)
    print("# " + proposal.motivation.replace("\n", "\n# "))
    print(proposal.source.module_source)
    if args.out:
        args.out.write_text(proposal.source.module_source)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("propose", help="propose the next candidate from a parent layer")
    cmd.add_argument("--parent", type=Path, required=True, help="Python file of the parent layer")
    cmd.add_argument(
        "--mode",
        choices=MODES,
        metavar="MODE",
        help="LLM code or a DSL spec: %(choices)s (default: code with an LLM, dsl without; "
        "the researcher's choice when it is given by --researcher)",
    )
    cmd.add_argument(
        "--llm",
        choices=LLM_BACKENDS,
        metavar="BACKEND",
        help="LLM backend of a local researcher: %(choices)s (default: $ASIARCH_LLM_BACKEND, else none)",
    )
    cmd.add_argument(
        "--researcher",
        default=os.environ.get("ASIARCH_RESEARCHER_ADDRESS"),
        help="host:port (default: $ASIARCH_RESEARCHER_ADDRESS, else one is started locally)",
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of the proposal")
    cmd.add_argument("--out", type=Path, help="also write the proposed source here (default: only print it)")
    cmd.add_argument("--json", action="store_true", help="print the ProposeResponse as JSON")
    cmd.set_defaults(run=lambda args: asyncio.run(_propose(args)))
