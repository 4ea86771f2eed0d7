"""Time big selector requests against a real selector, with a health probe running beside them.

    .venv/bin/python -P tests/selector/time_selection.py [--sizes 1000,2000,4000,8000] [--benchmarks 0]
    .venv/bin/python -P tests/selector/time_selection.py --drain 32

The first form prints, per size, how long SelectParents took (or how it failed) and the slowest
health answer seen while it ran. The second sends that many calls at once, sends SIGTERM, and counts
the status codes the calls ended with. Not a test (no pass/fail): the numbers of issue 16.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
from big_requests import non_dominated_request  # noqa: E402
from support import start_service  # noqa: E402

from asiarch.v1 import selector_pb2_grpc  # noqa: E402


async def _probe(channel: grpc.aio.Channel, done: asyncio.Event) -> float:
    stub = health_pb2_grpc.HealthStub(channel)
    slowest = 0.0
    while not done.is_set():
        started = time.perf_counter()
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=60)
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return slowest


async def _time_one(address: str, n: int, benchmarks: int, strategy: str, k: int) -> str:
    request = non_dominated_request(n, benchmarks, k=k, strategy=strategy)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        done = asyncio.Event()
        probe = asyncio.create_task(_probe(channel, done))
        started = time.perf_counter()
        try:
            await stub.SelectParents(request, timeout=120)
            outcome = "OK"
        except grpc.aio.AioRpcError as exc:
            outcome = f"{exc.code().name}: {exc.details()[:80]}"
        elapsed = time.perf_counter() - started
        done.set()
        slowest = await probe
    size = len(request.SerializeToString()) // 1024
    return f"| {n} | {size} | {elapsed:.2f} | {slowest * 1000:.0f} | {outcome} |"


async def _drain(address: str, calls: int, service) -> None:  # type: ignore[no-untyped-def]
    request = non_dominated_request(1000)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        pending = [asyncio.ensure_future(stub.SelectParents(request, timeout=60)) for _ in range(calls)]
        await asyncio.sleep(0.3)
        service.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*pending, return_exceptions=True)
    counts = collections.Counter(
        "OK" if not isinstance(r, BaseException) else f"{r.code().name} {r.details()!r}"  # type: ignore[attr-defined]
        for r in results
    )
    for outcome, count in counts.most_common():
        print(f"{count:3d}  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,2000,4000,8000")
    parser.add_argument("--benchmarks", type=int, default=0, help="objectives beyond loss and throughput")
    parser.add_argument("--strategy", default="pareto")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--drain", type=int, default=0, help="calls in flight at SIGTERM (drain mode)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        service = start_service("selector", Path(workdir), env={"ASIARCH_LOG_LEVEL": "info"})
        try:
            if args.drain:
                asyncio.run(_drain(service.address, args.drain, service))
                return
            print(f"{args.strategy}, {2 + args.benchmarks} objectives, k = {args.k}")
            print("| candidates | request KiB | SelectParents s | slowest health ms | outcome |")
            print("|---|---|---|---|---|")
            for n in (int(s) for s in args.sizes.split(",")):
                print(asyncio.run(_time_one(service.address, n, args.benchmarks, args.strategy, args.k)))
        finally:
            service.stop()


if __name__ == "__main__":
    main()
