"""Reading a run through the Analyst API: which run, all its experiments, one experiment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from asiarch.common.errors import ConfigError
from asiarch.orchestrator.access import DEFAULT_RUNS, RunInfo, analyst_channel, latest_run, read_run
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

# Experiments carry their source, loss curve and analysis (tens of KiB each): 100 per page stays far
# below the 16 MiB message limit of the channel.
PAGE_SIZE = 100
RPC_TIMEOUT = 60.0


class ResultsError(Exception):
    """A failure to report to the user as one line (exit code 1)."""


@dataclass
class RunData:
    info: RunInfo
    experiments: list[common_pb2.Experiment]

    @property
    def names(self) -> dict[str, str]:
        return {e.id: e.name for e in self.experiments}


def resolve_run_dir(run_dir: Path | None, runs: Path = DEFAULT_RUNS) -> Path:
    """--run-dir, or the most recently updated run under runs/."""
    if run_dir is not None:
        if not run_dir.is_dir():
            raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
        return run_dir
    found = latest_run(runs)
    if found is None:
        raise ConfigError(
            f"no run found under {str(runs)!r} (a directory with run.json); "
            "start one with `asiarch discover` or pass --run-dir DIR"
        )
    return found


def rpc_error(exc: grpc.aio.AioRpcError, what: str) -> ResultsError:
    details = exc.details() or exc.code().name
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ResultsError(f"the analyst could not be reached for {what}: {details}")
    return ResultsError(f"{what} failed: {exc.code().name}: {details}")


async def list_experiments(
    channel: grpc.aio.Channel,
    run_id: str,
    statuses: Sequence[int] = (),
    rpc_timeout: float = RPC_TIMEOUT,
) -> list[common_pb2.Experiment]:
    """Every experiment of the run, oldest first (creation order keeps paging stable while a run records)."""
    stub = analyst_pb2_grpc.AnalystStub(channel)
    found: list[common_pb2.Experiment] = []
    token = ""
    while True:
        request = analyst_pb2.ListExperimentsRequest(
            run_id=run_id,
            statuses=list(statuses),
            sort=analyst_pb2.EXPERIMENT_SORT_CREATED_ASC,
            page_size=PAGE_SIZE,
            page_token=token,
        )
        try:
            reply = await stub.ListExperiments(request, timeout=rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, f"listing the experiments of run {run_id!r}") from None
        found.extend(reply.experiments)
        token = reply.next_page_token
        if not token:
            return found


async def get_experiment(channel: grpc.aio.Channel, experiment_id: str) -> common_pb2.Experiment:
    stub = analyst_pb2_grpc.AnalystStub(channel)
    try:
        return await stub.GetExperiment(
            analyst_pb2.GetExperimentRequest(id=experiment_id), timeout=RPC_TIMEOUT
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise ResultsError(f"no experiment with id {experiment_id!r} ({exc.details()})") from None
        raise rpc_error(exc, f"reading experiment {experiment_id!r}") from None


async def load_run(run_dir: Path, address: str | None) -> RunData:
    """run.json and every experiment of the run, from its analyst (a local one when none is given)."""
    info = read_run(run_dir)
    async with analyst_channel(run_dir, address) as channel:
        experiments = await list_experiments(channel, info.run_id)
    return RunData(info, experiments)


async def load_experiment(run_dir: Path, address: str | None, experiment_id: str) -> common_pb2.Experiment:
    async with analyst_channel(run_dir, address) as channel:
        return await get_experiment(channel, experiment_id)


async def load_with_names(
    run_dir: Path, address: str | None, experiment_id: str
) -> tuple[common_pb2.Experiment, dict[str, str]]:
    """One experiment and the names of its parents (one channel, so a local analyst starts once)."""
    async with analyst_channel(run_dir, address) as channel:
        experiment = await get_experiment(channel, experiment_id)
        names = {experiment.id: experiment.name}
        for parent in experiment.parent_ids:
            try:
                names[parent] = (await get_experiment(channel, parent)).name
            except ResultsError:
                names[parent] = parent
    return experiment, names
