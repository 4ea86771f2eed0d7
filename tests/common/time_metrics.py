"""Time what the metrics add to a call: the same in-process server with and without `RpcMetrics`.

    .venv/bin/python -P tests/common/time_metrics.py [--calls 2000] [--rounds 7]

Prints, per variant, the median over rounds (the two variants alternate, so load on the machine
falls on both) of the mean CPU time (client and server share this process) and wall time of one
unary SelectParents call over a real loopback channel, and the differences; then the bookkeeping
alone (`RpcMetrics.call`, `begin`, `end`, no gRPC) per call. CPU time is the steadier number on a
busy machine: wall time there mostly measures waiting for a core. Access logging is set to warnings
only, so neither variant times writing a line per call.
Not a test (no pass/fail): the numbers of issue 21.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
from probe_service import ProbeSelector  # noqa: E402

from asiarch.common.config import ServerSettings  # noqa: E402
from asiarch.common.logs import configure_logging  # noqa: E402
from asiarch.common.metrics import RpcMetrics  # noqa: E402
from asiarch.common.server import build_server  # noqa: E402
from asiarch.v1 import selector_pb2, selector_pb2_grpc  # noqa: E402


async def _serve(metrics: RpcMetrics | None) -> tuple[grpc.aio.Server, int]:
    server = build_server(ServerSettings(port=0), metrics=metrics)
    selector_pb2_grpc.add_SelectorServicer_to_server(ProbeSelector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _mean_call_seconds(port: int, calls: int) -> tuple[float, float]:
    """CPU seconds and wall seconds of one call, averaged over `calls`."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        request = selector_pb2.SelectParentsRequest(strategy="ok")
        for _ in range(50):  # warm the connection and the label caches
            await stub.SelectParents(request)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await stub.SelectParents(request)
        return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


async def _bookkeeping_seconds(calls: int) -> float:
    metrics = RpcMetrics("bench")
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: None)
    started = time.perf_counter()
    for _ in range(calls):
        call = metrics.call("/asiarch.v1.Selector/SelectParents", handler)
        call.begin()
        call.end(grpc.StatusCode.OK)
    return (time.perf_counter() - started) / calls


async def main(calls: int, rounds: int) -> None:
    configure_logging("warning")  # the access log's lines would time the terminal, in both variants
    servers = {"without metrics": await _serve(None), "with metrics": await _serve(RpcMetrics("bench"))}
    means: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, (_, port) in servers.items():
            means[name].append(await _mean_call_seconds(port, calls))
    for server, _ in servers.values():
        await server.stop(0)
    medians = {}
    for name, values in means.items():
        cpu, wall = (statistics.median(v[i] for v in values) * 1e6 for i in (0, 1))
        medians[name] = (cpu, wall)
        print(f"{name:>16}: {cpu:7.1f} us CPU, {wall:7.1f} us wall per call (medians of {rounds} x {calls})")
    (cpu0, wall0), (cpu1, wall1) = medians["without metrics"], medians["with metrics"]
    added = f"{cpu1 - cpu0:7.1f} us CPU ({(cpu1 - cpu0) / cpu0:+.1%}), {wall1 - wall0:7.1f} us wall"
    print(f"{'added':>16}: {added}")
    bookkeeping = await _bookkeeping_seconds(calls * 10) * 1e6
    print(f"{'bookkeeping':>16}: {bookkeeping:7.2f} us per call (RpcMetrics.call + begin + end, no gRPC)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
