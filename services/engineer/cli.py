"""`asiarch validate FILE`, `evaluate FILE` and `baselines`: talk to an engineer, or start one.

Registered in the `asiarch.commands` entry-point group; imports nothing heavy
until a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from asiarch.common.cli import BUDGETS, budget_presets, matching, output_path
from asiarch.common.devices import DEVICE_PATTERN, DEVICES

BASELINES_PAGE = "baselines.md"


@contextlib.asynccontextmanager
async def _engineer(address: str | None) -> AsyncIterator[str]:
    if address:
        yield address
        return
    from asiarch.common.local import local_service

    async with local_service("engineer") as local:
        yield local


def _source(path: Path, class_name: str) -> object:
    from asiarch.v1 import common_pb2

    return common_pb2.ArchitectureSource(module_source=path.read_text(), class_name=class_name)


async def _validate(args: argparse.Namespace) -> int:
    from asiarch.common.client import open_channel
    from asiarch.v1 import engineer_pb2, engineer_pb2_grpc

    request = engineer_pb2.ValidateRequest(
        source=_source(args.file, args.class_name),
        reference_only=args.reference,
        static_only=args.static_only,
    )
    async with _engineer(args.engineer) as address, open_channel(address, auth_token=_token()) as channel:
        response = await engineer_pb2_grpc.EngineerStub(channel).Validate(request, timeout=600)
    for check in response.checks:
        mark = "ok  " if check.passed else "FAIL"
        where = f" (line {check.line})" if check.line else ""
        print(f"{mark} {check.name}{where} {check.message}".rstrip())
    if response.valid:
        print(f"{args.file}: valid")
        return 0
    print(f"{args.file}: invalid: {response.failure_reason}", file=sys.stderr)
    return 1


async def _evaluate(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from asiarch.common.client import open_channel
    from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

    preset = budget_presets()[args.budget]
    request = engineer_pb2.EvaluateRequest(
        experiment_id=args.id,
        proposal=common_pb2.Proposal(
            name=args.file.stem, source=_source(args.file, args.class_name), reference_only=args.reference
        ),
        budget=common_pb2.Budget(preset=preset, device=args.device or "", seed=args.seed),
    )
    result = None
    async with _engineer(args.engineer) as address, open_channel(address, auth_token=_token()) as channel:
        async for event in engineer_pb2_grpc.EngineerStub(channel).Evaluate(request):
            kind = event.WhichOneof("event")
            if kind == "result":
                result = event.result
            elif not args.json and kind == "progress":
                p = event.progress
                stage = common_pb2.EvaluationStage.Name(p.stage).removeprefix("EVALUATION_STAGE_").lower()
                loss = f" loss {p.loss:.3f}" if p.HasField("loss") else ""
                steps = f" {p.step}/{p.total_steps}" if p.total_steps else ""
                print(
                    f"[{p.elapsed_seconds:6.1f}s] {stage}{steps}{loss} {p.message}".rstrip(), file=sys.stderr
                )
    assert result is not None
    if args.json:
        print(json_format.MessageToJson(result, preserving_proto_field_name=True))
    else:
        _print_summary(result)
    return 0 if result.status == common_pb2.EVALUATION_STATUS_SUCCEEDED else 1


def _print_summary(result: object) -> None:
    from asiarch.v1 import common_pb2

    assert isinstance(result, common_pb2.Evaluation)
    status = common_pb2.EvaluationStatus.Name(result.status).removeprefix("EVALUATION_STATUS_")
    print(f"status: {status} ({result.wall_seconds:.1f} s on {result.device})")
    if result.failure_reason:
        print(f"reason: {result.failure_reason}")
    m = result.metrics
    if m.HasField("val_loss"):
        print(f"validation loss: {m.val_loss:.4f} nats/byte ({m.bits_per_byte:.4f} bits/byte)")
        print(f"throughput: {m.tokens_per_second:,.0f} tokens/s")
        print(f"parameters: {m.parameters:,} ({m.layer_parameters:,} in the candidate layers)")
        for score in m.benchmarks:
            print(f"{score.name}: {score.score:.3f}")


async def _baselines(args: argparse.Namespace) -> int:
    """Evaluate every shipped baseline and write the table where --out says (see output_path)."""
    import platform
    import time

    from asiarch.common.client import open_channel
    from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

    out = output_path(args.out, BASELINES_PAGE)  # decided first: a bad --out costs no training
    out.parent.mkdir(parents=True, exist_ok=True)
    preset = budget_presets()[args.budget]
    rows = []
    async with _engineer(args.engineer) as address, open_channel(address, auth_token=_token()) as channel:
        stub = engineer_pb2_grpc.EngineerStub(channel)
        baselines = (await stub.ListBaselines(engineer_pb2.ListBaselinesRequest())).baselines
        for proposal in baselines:
            started = time.perf_counter()
            request = engineer_pb2.EvaluateRequest(
                experiment_id=f"baseline-{proposal.name}",
                proposal=proposal,
                budget=common_pb2.Budget(preset=preset, seed=args.seed),
                max_repairs=0,
            )
            result = None
            async for event in stub.Evaluate(request):
                if event.WhichOneof("event") == "result":
                    result = event.result
            assert result is not None
            rows.append((proposal, result, time.perf_counter() - started))
            print(f"{proposal.name}: {common_pb2.EvaluationStatus.Name(result.status)}", file=sys.stderr)
    settings = [b.name for b in rows[0][1].metrics.benchmarks] if rows else []
    lines = [
        "# Baselines",
        "",
        f"Every run starts from these layers (`services/engineer/baselines/`). Measured with "
        f"`asiarch baselines --budget {args.budget} --seed {args.seed}` on {platform.machine()} "
        f"({os.cpu_count()} cores), {rows[0][1].device if rows else ''}.",
        "",
        "| baseline | status | val loss (nats/byte) | bits/byte | "
        + " | ".join(settings)
        + " | tokens/s | parameters | wall s |",
        "|---|---|---:|---:|" + "---:|" * len(settings) + "---:|---:|---:|",
    ]
    for proposal, result, seconds in rows:
        m = result.metrics
        status = common_pb2.EvaluationStatus.Name(result.status).removeprefix("EVALUATION_STATUS_").lower()
        scores = " | ".join(f"{b.score:.3f}" for b in m.benchmarks) or " | ".join("" for _ in settings)
        name = proposal.name + (" (reference)" if proposal.reference_only else "")
        lines.append(
            f"| {name} | {status} | {m.val_loss:.4f} | {m.bits_per_byte:.4f} | {scores} | "
            f"{m.tokens_per_second:,.0f} | {m.parameters:,} | {seconds:.0f} |"
        )
    lines += ["", "Softmax attention is evaluated as a reference (quadratic, never a parent).", ""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written to {out.resolve()}")
    return 0 if all(r.status == common_pb2.EVALUATION_STATUS_SUCCEEDED for _, r, _ in rows) else 1


def _token() -> str | None:
    return os.environ.get("ASIARCH_AUTH_TOKEN") or None


def _add_engineer(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--engineer",
        default=os.environ.get("ASIARCH_ENGINEER_ADDRESS"),
        help="engineer host:port (default: $ASIARCH_ENGINEER_ADDRESS, else one is started locally)",
    )


def _add_budget(cmd: argparse.ArgumentParser, default: str) -> None:
    cmd.add_argument(
        "--budget", choices=BUDGETS, metavar="PRESET", default=default, help="budget preset: %(choices)s"
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of the training run")


def register(commands: argparse._SubParsersAction) -> None:
    for name, runner, help_text in (
        ("validate", _validate, "check a candidate layer (exit 0 valid, 1 invalid)"),
        ("evaluate", _evaluate, "train and benchmark a candidate layer"),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument("file", type=Path, help="Python file defining the layer class")
        cmd.add_argument("--class-name", default="DeltaNet", help="layer class")
        _add_engineer(cmd)
        cmd.add_argument(
            "--reference", action="store_true", help="a quadratic reference: skip the complexity verdict"
        )
        if name == "validate":
            cmd.add_argument("--static-only", action="store_true", help="static checks only; run nothing")
        else:
            _add_budget(cmd, "smoke")
            cmd.add_argument(
                "--device",
                type=matching(DEVICE_PATTERN, DEVICES),
                help=f"torch device: {DEVICES} (default: the engineer's)",
            )
            cmd.add_argument("--id", default="cli", help="experiment id to use")
            cmd.add_argument("--json", action="store_true", help="print the Evaluation as JSON")
        cmd.set_defaults(run=lambda args, runner=runner: asyncio.run(runner(args)))

    cmd = commands.add_parser("baselines", help=f"evaluate the shipped baselines, write {BASELINES_PAGE}")
    _add_budget(cmd, "cpu")
    _add_engineer(cmd)
    cmd.add_argument(
        "--out",
        type=Path,
        help=f"markdown file to write (default: docs/{BASELINES_PAGE} from the asiarch repository's root, "
        "else a new temporary folder)",
    )
    cmd.set_defaults(run=lambda args: asyncio.run(_baselines(args)))
