"""A kill at any instant of a write loses no acknowledged record and duplicates none (issue 16).

Kills are injected with strace where this machine lets it trace: `inject=SYSCALL:error=EIO:signal=SIGKILL:
when=N` on the store's file and its WAL, so the process dies exactly instead of its Nth write (pwrite64)
or fsync (fdatasync) there. The store-level sweep tries every such point of the analyst's write pattern
(insert, replace, insert) in a child process; the analyst-level test kills a real `asiarch serve
analyst` at points inside a Record, restarts it on the same run directory and reads everything back over
gRPC. Without strace both fall back to kills after random delays. Then: a damaged store is refused at
start with a message naming it, and a store found damaged while serving makes health NOT_SERVING and
every call UNAVAILABLE with that message (never INTERNAL).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from analyst_data import experiment
from grpc_health.v1 import health_pb2
from support import BIN, RunningService, health_status

from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import STORE_FILE, EmbeddedDatabase, StoreUnreadable
from asiarch.common.errors import Unavailable
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

WRITER = Path(__file__).with_name("crash_writer.py")
PENDING, SUCCEEDED = common_pb2.EXPERIMENT_STATUS_PENDING, common_pb2.EXPERIMENT_STATUS_SUCCEEDED
KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)  # the child itself, or strace passing its death on
WRITES = 3  # per pattern of crash_writer.py: insert, replace, insert
LIGHT = {"ASIARCH_ANALYST_INGEST_BUILTIN": "false", "ASIARCH_LLM_BACKEND": "none"}


def _can_trace() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-qq", "-o", os.devnull, "true"], capture_output=True, check=False)
    return probe.returncode == 0


TRACING = _can_trace()
HOW = "strace fault injection" if TRACING else "kills at random delays (strace cannot trace here)"


def _store_paths(store: Path) -> list[str]:
    return [arg for name in (STORE_FILE, f"{STORE_FILE}-wal") for arg in ("-P", str(store / name))]


def _injection(store: Path, syscall: str, nth: int) -> list[str]:
    """strace arguments: SIGKILL instead of the nth `syscall` on the store's files, in any thread."""
    inject = f"inject={syscall}:error=EIO:signal=SIGKILL:when={nth}"
    return [
        "strace",
        "-f",
        "-qq",
        "-o",
        os.devnull,
        *_store_paths(store),
        "-e",
        f"trace={syscall}",
        "-e",
        inject,
    ]


def _all_threads_traced(pid: int) -> bool:
    try:
        statuses = [p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/status")]
    except FileNotFoundError:  # a thread ended while we looked
        return False
    return bool(statuses) and all(s.split("TracerPid:")[1].split()[0] != "0" for s in statuses)


@pytest.fixture
def tracers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """strace processes attached by a test; any still running at the end (a failed test) are ended."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for tracer in started:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()


def attach_killer(pid: int, store: Path, syscall: str, nth: int) -> subprocess.Popen[bytes]:
    command = [*_injection(store, syscall, nth), "-p", str(pid)]
    tracer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not _all_threads_traced(pid):
        assert tracer.poll() is None and time.monotonic() < deadline, "strace did not attach"
        time.sleep(0.01)
    return tracer


# --- the store alone: every kill point of the write pattern ---------------------------------------------


class Expected:
    """What the store must hold: each id's last acknowledged status; the write in flight may or may not be."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.kill_points = 0

    def check(self, lines: list[str], found: dict[str, int]) -> None:
        in_flight: tuple[str, int] | None = None
        for line in lines:
            kind, _, key, status = line.split()
            if kind == "ack":
                self.status[key], in_flight = int(status), None
            else:
                in_flight = (key, int(status))
        for key, status in self.status.items():
            allowed = {status, in_flight[1]} if in_flight and in_flight[0] == key else {status}
            assert found.get(key) in allowed, f"{key}: acknowledged {status}, found {found.get(key)}"
        unexpected = set(found) - set(self.status) - ({in_flight[0]} if in_flight else set())
        assert not unexpected, f"records nobody wrote: {unexpected}"
        self.status = dict(found)  # the write in flight is settled either way now


async def _stored(store: Path) -> dict[str, int]:
    """id -> status of every record, read after the start-up check; fails on a duplicate id."""
    database = EmbeddedDatabase(store, attempts=1)
    try:
        await database.verify()
        page, _, total = await ExperimentRepository(database.collection("experiments")).page(
            "", [], analyst_pb2.EXPERIMENT_SORT_CREATED_ASC, 10_000, "", include_replicates=True
        )
    finally:
        await database.close()
    ids = [e.id for e in page]
    assert len(ids) == len(set(ids)) == total, f"duplicated records: {sorted(ids)}"
    return {e.id: e.status for e in page}


def _write(
    store: Path, prefix: str, rounds: int, kill: tuple[str, int] | None, delay: float | None
) -> list[str]:
    """Run the writer until it is done or killed (at `kill` by strace, or after `delay`); its lines."""
    command = [sys.executable, str(WRITER), str(store), prefix, str(rounds)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    tracer = attach_killer(child.pid, store, *kill) if kill else None
    timer = threading.Timer(delay, child.kill) if delay is not None else None
    if timer:
        timer.start()
    try:
        out, err = child.communicate(b"go\n", timeout=60)
    finally:
        if timer:
            timer.cancel()
        child.kill()  # nothing once it has ended; a writer still running after a failure must not stay
        if tracer:
            tracer.kill()
            tracer.wait()
    assert child.returncode in (0, *KILLED), f"writer failed ({child.returncode}):\n{err.decode()[-2000:]}"
    return out.decode().splitlines()


def test_no_acknowledged_write_is_lost_at_any_kill_point(tmp_path: Path) -> None:
    store, expected = tmp_path / "store", Expected()
    points: list[tuple[str, int]] = []
    if TRACING:
        for syscall in ("pwrite64", "fdatasync"):
            for nth in range(1, 200):  # until the pattern completes: every point of it tried
                lines = _write(store, f"{syscall}{nth}", 1, (syscall, nth), None)
                expected.check(lines[:-1] if lines[-1:] == ["done"] else lines, asyncio.run(_stored(store)))
                if lines[-1:] == ["done"]:
                    break
                points.append((syscall, nth))
                if syscall == "fdatasync":  # durable when acknowledged: each write fsynced before its ack
                    acks = sum(line.startswith("ack") for line in lines)
                    assert acks <= nth - 1, f"{acks} writes acknowledged with only {nth - 1} fsyncs"
        assert sum(syscall == "fdatasync" for syscall, _ in points) >= WRITES, points
    else:
        rng = random.Random(16)
        for i in range(25):
            lines = _write(store, f"loop{i}", 50, None, rng.uniform(0.02, 0.3))
            expected.check([line for line in lines if line != "done"], asyncio.run(_stored(store)))
            points.append(("random", i))
    kinds = collections.Counter(syscall for syscall, _ in points)
    print(
        f"store: {len(points)} kill points {dict(kinds)} ({HOW}), {len(expected.status)} records, none lost"
    )


# --- a real analyst, killed inside Records ----------------------------------------------------------------


def _start(service_factory: Callable[..., RunningService], run_dir: Path, **env: str) -> RunningService:
    return service_factory("analyst", env={"ASIARCH_RUN_DIR": str(run_dir), **LIGHT, **env}, timeout=120)


def _record(stub: analyst_pb2_grpc.AnalystStub, e: common_pb2.Experiment) -> analyst_pb2.RecordResponse:
    return stub.Record(analyst_pb2.RecordRequest(experiment=e), timeout=60)


def _records_until_killed(
    stub: analyst_pb2_grpc.AnalystStub, prefix: str, parent: str | None, acked: dict[str, int]
) -> common_pb2.Experiment:
    """Record PENDING then SUCCEEDED experiments until a call fails; the one in flight then.

    The first experiment of a run is a baseline (its SUCCEEDED record rescores the run); later ones are
    its children."""
    for i in range(200):
        key = f"{prefix}-{i}"
        for status in (PENDING, SUCCEEDED):
            e = experiment(key, parent=parent, status=status, baseline=parent is None)
            try:
                _record(stub, e)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, f"not failed by the kill: {exc.details()}"  # noqa: PT017
                return e
            acked[key] = status
        parent = parent or key
    raise AssertionError("the analyst was never killed")


def _read_back(service: RunningService, acked: dict[str, int]) -> None:
    stub = analyst_pb2_grpc.AnalystStub(service.channel())
    listed = stub.ListExperiments(
        analyst_pb2.ListExperimentsRequest(page_size=1000, include_replicates=True), timeout=30
    )
    ids = [e.id for e in listed.experiments]
    assert len(ids) == len(set(ids)) == listed.total, f"duplicated records: {sorted(ids)}"
    assert set(acked) <= set(ids), f"acknowledged records lost: {set(acked) - set(ids)}"
    for key, status in acked.items():
        assert stub.GetExperiment(analyst_pb2.GetExperimentRequest(id=key), timeout=30).status >= status


def test_a_killed_analyst_restarts_with_every_acknowledged_record(
    tmp_path: Path,
    service_factory: Callable[..., RunningService],
    tracers: list[subprocess.Popen[bytes]],
) -> None:
    run_dir, store = tmp_path / "run", tmp_path / "run" / "store"
    # Inside a Record's commit (the 21st page write after the attach: a few records in), and with a Record
    # fully written but not yet fsynced. The store-level sweep above tries every point; this proves the
    # analyst around it.
    points = [("pwrite64", 21), ("fdatasync", 4)] if TRACING else [("random", 0), ("random", 1)]
    acked: dict[str, int] = {}
    in_flight: common_pb2.Experiment | None = None
    rng = random.Random(16)
    for round_, point in enumerate([*points, None]):
        analyst = _start(service_factory, run_dir)
        stub = analyst_pb2_grpc.AnalystStub(analyst.channel())
        if in_flight is not None:
            # The orchestrator's retry of the call that died: recorded once, whether or not it was stored.
            assert _record(stub, in_flight).experiment.id == in_flight.id
            acked[in_flight.id] = max(acked.get(in_flight.id, 0), in_flight.status)
        _read_back(analyst, acked)
        if point is None:
            assert analyst.stop() == 0
            break
        if TRACING:
            tracers.append(attach_killer(analyst.process.pid, store, *point))
        else:
            threading.Timer(rng.uniform(0.05, 0.4), analyst.process.kill).start()
        in_flight = _records_until_killed(stub, f"r{round_}", next(iter(acked), None), acked)
        assert analyst.process.wait(timeout=30) in KILLED
    print(
        f"analyst: {len(points)} kills inside Records ({HOW}), {len(acked)} acknowledged records, none lost"
    )


# --- a damaged store ----------------------------------------------------------------------------------------


async def _fill(store: Path, count: int) -> None:
    database = EmbeddedDatabase(store, attempts=1)
    repository = ExperimentRepository(database.collection("experiments"))
    for i in range(count):
        await repository.insert(experiment(f"e{i}", motivation="a record worth keeping " * 50))
    await database.close()  # the last connection's close moves the WAL into the file


def _damage(path: Path) -> None:
    """Garbage over every page but the first (the header and the schema stay readable)."""
    size = path.stat().st_size
    assert size > 3 * 4096
    with path.open("r+b") as file:
        file.seek(4096)
        file.write(random.Random(16).randbytes(size - 4096))


def _serve(run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASIARCH_RUN_DIR": str(run_dir), **LIGHT}
    command = [str(BIN / "asiarch"), "serve", "analyst", "--port", "0"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_damaged_store_is_refused_at_start_with_a_clear_message(tmp_path: Path) -> None:
    store = tmp_path / "run" / "store"
    asyncio.run(_fill(store, 20))
    _damage(store / STORE_FILE)
    refused = _serve(tmp_path / "run")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"the embedded store {store / STORE_FILE} is damaged" in refused.stderr
    assert ".recover" in refused.stderr and "Traceback" not in refused.stderr


def test_a_store_of_the_old_format_is_refused_at_start(tmp_path: Path) -> None:
    legacy = tmp_path / "run" / "store" / "asiarch.experiments"
    legacy.mkdir(parents=True)
    (legacy / "$.data").write_bytes(b"\x05\x00\x00\x00\x00")
    (tmp_path / "run" / "store" / "asiarch").mkdir()
    refused = _serve(tmp_path / "run")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "written by an older asiarch" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "run" / "store" / STORE_FILE).exists()  # nothing created beside it


async def test_a_damaged_file_fails_every_call_unavailable_and_is_reported_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    await _fill(store, 20)
    _damage(store / STORE_FILE)
    reports: list[StoreUnreadable] = []

    async def report(error: StoreUnreadable) -> None:
        reports.append(error)

    database = EmbeddedDatabase(store, attempts=3, on_unreadable=report)
    try:
        repository = ExperimentRepository(database.collection("experiments"))
        for _ in range(2):
            with pytest.raises(Unavailable, match=f"embedded store {store / STORE_FILE} is damaged"):
                await repository.get("e1")
        with pytest.raises(StoreUnreadable):
            await repository.page("", [], 0, 10, "")
        assert len(reports) == 1  # health turns once; the later calls fail fast with the same message
    finally:
        await database.close()


def test_a_store_damaged_while_serving_makes_health_not_serving(
    tmp_path: Path, service_factory: Callable[..., RunningService]
) -> None:
    store = tmp_path / "run" / "store"
    asyncio.run(_fill(store, 20))
    analyst = _start(service_factory, tmp_path / "run", ASIARCH_ANALYST_PRELOAD_VECTORS="false")
    stub = analyst_pb2_grpc.AnalystStub(analyst.channel())
    assert stub.GetExperiment(analyst_pb2.GetExperimentRequest(id="e3"), timeout=30).id == "e3"
    _damage(store / STORE_FILE)
    # Another connection's commit: the analyst's SQLite drops the pages it holds and reads the file again.
    with contextlib.closing(sqlite3.connect(store / STORE_FILE)) as other:
        other.execute("CREATE TABLE poke (x)")
        other.commit()
    for call in (
        lambda: stub.GetExperiment(analyst_pb2.GetExperimentRequest(id="e5"), timeout=30),
        lambda: stub.ListExperiments(analyst_pb2.ListExperimentsRequest(page_size=10), timeout=30),
    ):
        with pytest.raises(grpc.RpcError) as failed:
            call()
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
        assert f"the embedded store {store / STORE_FILE} is damaged" in failed.value.details()
    for service in ("", "asiarch.v1.Analyst"):
        assert health_status(analyst.address, service) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert analyst.stop() == 0
