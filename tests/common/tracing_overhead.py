"""What tracing adds to a call: CPU and wall per call, tracing off and on, client and server.

    .venv/bin/python -P tests/common/tracing_overhead.py [--calls 1000] [--rounds 2]

A real selector process (`asiarch serve selector`) answers SelectParents over 20 candidates from this
process's `open_channel` channel, N calls in sequence after a warm-up, in rounds that alternate off and
on (the machine's load drifts). On: both sides trace, with OTLP/gRPC batch export to a collector in
another process (`--collect PORT_FILE`: its CPU is the collector's, not ours). The client's CPU is this
process's, the server's is read from /proc. Not a test: numbers for README "Tracing".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import BIN, start_service

TICKS = os.sysconf("SC_CLK_TCK")


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request: object, context: object) -> object:
        return trace_service_pb2.ExportTraceServiceResponse()


def collect(port_file: Path) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    port_file.write_text(str(server.add_insecure_port("127.0.0.1:0")))
    server.start()
    server.wait_for_termination()


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def calls(address: str, n: int) -> tuple[float, float]:
    """(wall, this process's CPU) of n SelectParents calls, after a warm-up."""
    from asiarch.common.client import open_channel
    from asiarch.v1 import selector_pb2, selector_pb2_grpc

    request = selector_pb2.SelectParentsRequest(
        strategy="asi-arch",
        k=2,
        candidates=[selector_pb2.Candidate(id=f"c{i}", name=f"c{i}", fitness=i / 20) for i in range(20)],
    )
    async with open_channel(address) as channel:
        stub = selector_pb2_grpc.SelectorStub(channel)
        for _ in range(max(50, n // 10)):
            await stub.SelectParents(request, timeout=10)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await stub.SelectParents(request, timeout=10)
        return time.perf_counter() - wall, time.process_time() - cpu


def measure(traced: bool, n: int, otel: dict[str, str], workdir: Path) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) per call, in microseconds."""
    from asiarch.common import tracing

    env = otel if traced else {}
    service = start_service("selector", workdir, env={"ASIARCH_LOG_LEVEL": "info", **env})
    try:
        os.environ.update(env)
        if traced:
            tracing.configure("overhead-client")
        before = process_cpu(service.process.pid)
        wall, client = asyncio.run(calls(service.address, n))
        server = process_cpu(service.process.pid) - before
    finally:
        tracing.shutdown()
        for key in env:
            os.environ.pop(key, None)
        service.stop()
    return tuple(1e6 * value / n for value in (wall, client, server))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--collect", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collect:
        collect(args.collect)
        return
    workdir = Path(tempfile.mkdtemp(prefix="tracing-overhead-"))
    port_file = workdir / "collector.port"
    collector = subprocess.Popen([sys.executable, "-P", __file__, "--collect", str(port_file)])
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.05)
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port_file.read_text()}",
    }
    results: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    try:
        for _ in range(args.rounds):
            for traced in (False, True):
                results[traced].append(measure(traced, args.calls, otel, workdir))
    finally:
        collector.kill()
    print(f"{args.calls} calls x {args.rounds} rounds; microseconds per call (median of rounds); {BIN}")
    print(f"{'':8} {'wall':>8} {'client CPU':>11} {'server CPU':>11}")
    for traced in (False, True):
        row = [statistics.median(r[i] for r in results[traced]) for i in range(3)]
        print(f"{'on' if traced else 'off':8} {row[0]:8.0f} {row[1]:11.0f} {row[2]:11.0f}")


if __name__ == "__main__":
    main()
