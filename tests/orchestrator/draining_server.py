"""A bare grpc.aio Selector whose handlers block the event loop, for the retry tests.

    python -P draining_server.py PORT_FILE [--port N] [--busy SECONDS]

Each SelectParents call holds the loop for --busy seconds (as the selector's pareto did before
issue 16), so calls arriving together are accepted by gRPC but not yet handed to a handler. On
SIGTERM the server stops with a 10 s grace: what gRPC then sends for those calls is what a client
of a draining server really sees. With --busy 0 it answers at once (the replacement server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

import grpc

from asiarch.v1 import selector_pb2, selector_pb2_grpc


class BusySelector(selector_pb2_grpc.SelectorServicer):
    def __init__(self, busy: float) -> None:
        self.busy = busy

    async def SelectParents(
        self, request: selector_pb2.SelectParentsRequest, context: grpc.aio.ServicerContext
    ) -> selector_pb2.SelectParentsResponse:
        time.sleep(self.busy)  # noqa: ASYNC251 - on purpose: the event loop is held
        return selector_pb2.SelectParentsResponse(strategy=f"answered by {os.getpid()}")


def _write_port(port_file: str, port: int) -> None:
    with open(port_file + ".tmp", "w") as file:
        file.write(str(port))
    os.replace(port_file + ".tmp", port_file)  # a reader never sees it half written


async def main(port_file: str, port: int, busy: float) -> None:
    server = grpc.aio.server()
    selector_pb2_grpc.add_SelectorServicer_to_server(BusySelector(busy), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    _write_port(port_file, bound)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--busy", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(main(args.port_file, args.port, args.busy))
