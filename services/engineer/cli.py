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

from asiarch.common import contract
from asiarch.common.cli import (
    BUDGETS,
    PRECISIONS,
    in_repository,
    matching,
    output_path,
    precision_value,
)
from asiarch.common.contract import DEFAULT_CLASS_NAME, budget_presets
from asiarch.common.devices import DEVICE_PATTERN, DEVICES
from asiarch.engineer.baseline_table import BaselineTable, page
from asiarch.engineer.budgets import DEFAULT_PRESET, SMOKE

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
    from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

    request = engineer_pb2.ValidateRequest(
        source=_source(args.file, args.class_name),
        budget=common_pb2.Budget(precision=precision_value(args.precision)),
        reference_only=args.reference,
        static_only=args.static_only,
    )
    async with _engineer(args.engineer) as address, open_channel(address, auth_token=_token()) as channel:
        response = await engineer_pb2_grpc.EngineerStub(channel).Validate(request, timeout=600)
    if args.json:
        print(_json(response))
        return 0 if response.valid else 1
    for check in response.checks:
        mark = "ok  " if check.passed else "FAIL"
        where = f" (line {check.line})" if check.line else ""
        print(f"{mark} {check.name} [{contract.stage_label(check.stage)}]{where} {check.message}".rstrip())
    if response.valid:
        print(f"{args.file}: valid")
        return 0
    failed = next((check for check in response.checks if not check.passed), None)
    stage = f" at {contract.stage_label(failed.stage)}" if failed else ""
    print(f"{args.file}: invalid{stage}: {response.failure_reason}", file=sys.stderr)
    return 1


def _json(message: object) -> str:
    """Every field, zeros and empty lists included: a reader must tell a 0.0 score from one not measured."""
    from google.protobuf import json_format

    return json_format.MessageToJson(
        message,  # type: ignore[arg-type]
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


async def _evaluate(args: argparse.Namespace) -> int:
    from asiarch.common.client import open_channel
    from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

    preset = budget_presets()[args.budget]
    request = engineer_pb2.EvaluateRequest(
        experiment_id=args.id,
        proposal=common_pb2.Proposal(
            name=args.file.stem, source=_source(args.file, args.class_name), reference_only=args.reference
        ),
        budget=common_pb2.Budget(
            preset=preset, device=args.device or "", seed=args.seed, precision=precision_value(args.precision)
        ),
    )
    result = None
    async with _engineer(args.engineer) as address, open_channel(address, auth_token=_token()) as channel:
        async for event in engineer_pb2_grpc.EngineerStub(channel).Evaluate(request):
            kind = event.WhichOneof("event")
            if kind == "result":
                result = event.result
            elif not args.json and kind == "progress":
                p = event.progress
                stage = contract.stage_key(p.stage)
                loss = f" loss {p.loss:.3f}" if p.HasField("loss") else ""
                steps = f" {p.step}/{p.total_steps}" if p.total_steps else ""
                print(
                    f"[{p.elapsed_seconds:6.1f}s] {stage}{steps}{loss} {p.message}".rstrip(), file=sys.stderr
                )
    assert result is not None
    if args.json:
        print(_json(result))
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


async def _evaluate_baseline(
    stub: object, proposal: object, preset: int, seed: int, precision: int
) -> tuple[object, float]:
    import time

    from asiarch.v1 import common_pb2, engineer_pb2

    started = time.perf_counter()
    request = engineer_pb2.EvaluateRequest(
        experiment_id=f"baseline-{proposal.name}-s{seed}",  # type: ignore[attr-defined]
        proposal=proposal,
        budget=common_pb2.Budget(preset=preset, seed=seed, precision=precision),
        max_repairs=0,
    )
    result = None
    async for event in stub.Evaluate(request):  # type: ignore[attr-defined]
        if event.WhichOneof("event") == "result":
            result = event.result
    assert result is not None
    return result, time.perf_counter() - started


async def _baselines(args: argparse.Namespace) -> int:
    """Evaluate every shipped baseline on --seeds seeds; write the table (mean ± sd) where --out says and
    the budget's noise floor beside the fitness that reads it (see asiarch.common.noise)."""
    from asiarch.common import noise
    from asiarch.common.client import open_channel
    from asiarch.v1 import common_pb2, engineer_pb2, engineer_pb2_grpc

    out = output_path(args.out, BASELINES_PAGE)  # decided first: a bad --out costs no training
    out.parent.mkdir(parents=True, exist_ok=True)
    preset = budget_presets()[args.budget]
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs: dict[str, list[tuple[object, float]]] = {}
    async with _engineer(args.engineer) as address, open_channel(address, auth_token=_token()) as channel:
        stub = engineer_pb2_grpc.EngineerStub(channel)
        proposals = (await stub.ListBaselines(engineer_pb2.ListBaselinesRequest())).baselines
        for seed in seeds:
            for proposal in proposals:
                result, seconds = await _evaluate_baseline(
                    stub, proposal, preset, seed, precision_value(args.precision)
                )
                runs.setdefault(proposal.name, []).append((result, seconds))
                status = common_pb2.EvaluationStatus.Name(result.status)
                print(f"{proposal.name} seed {seed}: {status} ({seconds:.0f} s)", file=sys.stderr)
    table = BaselineTable(args.budget, seeds, proposals, runs)
    out.write_text(page(out.read_text() if out.exists() else "", table.markdown()))
    print(table.markdown())
    print(f"written to {out.resolve()}")
    if len(seeds) > 1 and table.all_succeeded:
        floor = noise.TABLE if args.out is None and in_repository() else out.with_name(noise.TABLE.name)
        noise.write_entry(table.noise_entry(), floor)
        print(f"noise floor of {args.budget}/rung1 written to {floor.resolve()}")
    return 0 if table.all_succeeded else 1


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
    _add_precision(cmd)


def _add_precision(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--precision",
        choices=PRECISIONS,
        metavar="P",
        help="numeric precision of the checks, training and MQAR: %(choices)s (default: the preset's)",
    )


def register(commands: argparse._SubParsersAction) -> None:
    for name, runner, help_text in (
        ("validate", _validate, "check a candidate layer (exit 0 valid, 1 invalid)"),
        ("evaluate", _evaluate, "train and benchmark a candidate layer"),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument("file", type=Path, help="Python file defining the layer class")
        cmd.add_argument("--class-name", default=DEFAULT_CLASS_NAME, help="layer class")
        _add_engineer(cmd)
        cmd.add_argument(
            "--reference", action="store_true", help="a quadratic reference: skip the complexity verdict"
        )
        if name == "validate":
            cmd.add_argument("--static-only", action="store_true", help="static checks only; run nothing")
            _add_precision(cmd)
            cmd.add_argument("--json", action="store_true", help="print the ValidateResponse as JSON")
        else:
            _add_budget(cmd, SMOKE)  # a command-line check of a layer: seconds, not minutes
            cmd.add_argument(
                "--device",
                type=matching(DEVICE_PATTERN, DEVICES),
                help=f"torch device: {DEVICES} (default: the engineer's)",
            )
            cmd.add_argument("--id", default="cli", help="experiment id to use")
            cmd.add_argument("--json", action="store_true", help="print the Evaluation as JSON")
        cmd.set_defaults(run=lambda args, runner=runner: asyncio.run(runner(args)))

    cmd = commands.add_parser("baselines", help=f"evaluate the shipped baselines, write {BASELINES_PAGE}")
    _add_budget(cmd, DEFAULT_PRESET)
    cmd.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="seeds --seed, --seed+1, ...: with N >= 2 the table shows mean ± sd and the budget's noise "
        "floor (what the fitness divides by) is written",
    )
    _add_engineer(cmd)
    cmd.add_argument(
        "--out",
        type=Path,
        help=f"markdown file to write (default: docs/{BASELINES_PAGE} from the asiarch repository's root, "
        "else a new temporary folder)",
    )
    cmd.set_defaults(run=lambda args: asyncio.run(_baselines(args)))
