"""A child process for test_analyst_crash: writes experiments into an embedded store, saying what it does.

`crash_writer.py STORE PREFIX ROUNDS` prints `ready` once imported and waits for a line on stdin (time to
attach a tracer), then runs ROUNDS times the analyst's write pattern (a PENDING record inserted, advanced to
SUCCEEDED by a replace, a second record inserted) and prints, flushed, a `begin OP ID STATUS` line before
each write and an `ack OP ID STATUS` line once it has returned, then `done`. Whoever kills it knows from
the last lines which writes were acknowledged and which one was in flight.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from analyst_data import experiment

from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import EmbeddedDatabase
from asiarch.v1 import common_pb2

PENDING, SUCCEEDED = common_pb2.EXPERIMENT_STATUS_PENDING, common_pb2.EXPERIMENT_STATUS_SUCCEEDED


def say(*words: object) -> None:
    print(*words, flush=True)


async def main(store: Path, prefix: str, rounds: int) -> None:
    database = EmbeddedDatabase(store, attempts=1)
    repository = ExperimentRepository(database.collection("experiments"))
    for i in range(rounds):
        first, second = f"{prefix}-{i}-a", f"{prefix}-{i}-b"
        say("begin insert", first, PENDING)
        await repository.insert(experiment(first, status=PENDING))
        say("ack insert", first, PENDING)
        done = experiment(first, motivation="a longer record: " + "why " * 400)
        say("begin replace", first, SUCCEEDED)
        await repository.replace(done)
        say("ack replace", first, SUCCEEDED)
        say("begin insert", second, SUCCEEDED)
        await repository.insert(experiment(second, parent=first))
        say("ack insert", second, SUCCEEDED)
    await database.close()
    say("done")


if __name__ == "__main__":
    say("ready")
    sys.stdin.readline()
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
