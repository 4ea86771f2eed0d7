"""`asiarch health`: ask services' gRPC health service whether they are SERVING.

Containers use it as their health check (and, with TLS on, Kubernetes as its
exec probe: the kubelet's own gRPC probe cannot speak TLS), and Kubernetes jobs
as an init step that waits for their dependencies, so an image needs no extra
probe binary. It connects through `open_channel`, so ASIARCH_TLS_* apply.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asiarch.common.client import open_channel

SERVING = "SERVING"


async def check(address: str, service: str = "", rpc_timeout: float = 3.0) -> str:
    """The status name the service at `address` reports, or why it could not be asked."""
    try:
        async with open_channel(address) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=rpc_timeout
            )
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


async def wait_until_serving(
    addresses: list[str], service: str = "", wait: float = 0.0, rpc_timeout: float = 3.0, poll: float = 1.0
) -> dict[str, str]:
    """Each address's last status, polling until all are SERVING or `wait` seconds have passed."""
    deadline = time.monotonic() + wait
    statuses: dict[str, str] = {}
    while True:
        asking = [a for a in addresses if statuses.get(a) != SERVING]
        answers = await asyncio.gather(*(check(a, service, rpc_timeout) for a in asking))
        statuses.update(zip(asking, answers, strict=True))
        if all(status == SERVING for status in statuses.values()) or time.monotonic() >= deadline:
            return {a: statuses[a] for a in addresses}
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def _run(args: argparse.Namespace) -> int:
    statuses = asyncio.run(wait_until_serving(args.addresses, args.service, args.wait, args.timeout))
    for address, status in statuses.items():
        print(f"{address}\t{status}", file=sys.stdout if status == SERVING else sys.stderr)
    return 0 if all(status == SERVING for status in statuses.values()) else 1


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "health",
        help="check that services answer SERVING on the gRPC health service",
        description="Exit 0 when every ADDRESS reports SERVING, 1 otherwise (each status is printed).",
    )
    cmd.add_argument("addresses", nargs="+", metavar="ADDRESS", help="host:port (or any gRPC target)")
    cmd.add_argument(
        "--service", default="", help="a service name, e.g. asiarch.v1.Selector (default: the server)"
    )
    cmd.add_argument("--wait", type=float, default=0.0, help="keep asking for up to this many seconds")
    cmd.add_argument("--timeout", type=float, default=3.0, help="seconds per health call (default 3)")
    cmd.set_defaults(run=_run)
