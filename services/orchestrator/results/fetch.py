"""Reading a run through the Analyst API: which run, all its experiments, one experiment.

One experiment is named by its id, its id without the run's prefix (the leaderboard's id
column), its name, or a unique prefix of any of these; a reference that matches nothing or
several experiments is one sentence saying what to type instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from asiarch.common.errors import ConfigError
from asiarch.orchestrator.access import DEFAULT_RUNS, RunInfo, analyst_channel, latest_run, read_run
from asiarch.v1 import analyst_pb2, analyst_pb2_grpc, common_pb2

from . import summary as s
from .progress import spinner

# Experiments carry their source, loss curve and analysis (tens of KiB each): 100 per page stays far
# below the 16 MiB message limit of the channel.
PAGE_SIZE = 100
RPC_TIMEOUT = 60.0
MAX_LISTED = 10  # matches named in an "ambiguous" message


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
    include_replicates: bool = False,
) -> list[common_pb2.Experiment]:
    """Every experiment of the run, oldest first (creation order keeps paging stable while a run records);
    with `include_replicates`, the confirmations' replicates too."""
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
            include_replicates=include_replicates,
        )
        try:
            reply = await stub.ListExperiments(request, timeout=rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, f"listing the experiments of run {run_id!r}") from None
        found.extend(reply.experiments)
        token = reply.next_page_token
        if not token:
            return found


async def get_experiment(channel: grpc.aio.Channel, experiment_id: str) -> common_pb2.Experiment | None:
    """The experiment with exactly this id (of any run), or None."""
    stub = analyst_pb2_grpc.AnalystStub(channel)
    try:
        return await stub.GetExperiment(
            analyst_pb2.GetExperimentRequest(id=experiment_id), timeout=RPC_TIMEOUT
        )
    except grpc.aio.AioRpcError as exc:
        # INVALID_ARGUMENT: not shaped like an id (a name with spaces, say); it may still be a name.
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise rpc_error(exc, f"reading experiment {experiment_id!r}") from None


def _hint(run_dir: Path) -> str:
    return f"run `asiarch leaderboard --all --run-dir {run_dir}` to see ids and names"


async def find_experiment(channel: grpc.aio.Channel, info: RunInfo, reference: str) -> common_pb2.Experiment:
    """The one experiment `reference` names: an id, an id without the run's prefix (what the
    leaderboard shows), a name, or a unique prefix of any of these, tried in that order.

    Raises ResultsError (one sentence, with what to type instead) when nothing or several match.
    """
    for candidate in dict.fromkeys((reference, f"{info.run_id}.{reference}")):
        found = await get_experiment(channel, candidate)
        if found is not None:
            return found
    experiments = await list_experiments(channel, info.run_id)
    named = [e for e in experiments if e.name == reference]
    matches = named or [
        e
        for e in experiments
        if e.id.startswith(reference) or s.short_id(e).startswith(reference) or e.name.startswith(reference)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ResultsError(
            f"no experiment of run {info.run_id!r} has the id or name {reference!r}: {_hint(info.run_dir)}"
        )
    listed = ", ".join(
        s.short_id(e) if e.name == s.short_id(e) else f"{s.short_id(e)} ({e.name})"
        for e in matches[:MAX_LISTED]
    )
    more = f" and {len(matches) - MAX_LISTED} more" if len(matches) > MAX_LISTED else ""
    raise ResultsError(
        f"{reference!r} matches {len(matches)} experiments of run {info.run_id!r}: {listed}{more}; "
        "give more of the id or the name"
    )


async def load_run(run_dir: Path, address: str | None, include_replicates: bool = False) -> RunData:
    """run.json and every experiment of the run (replicates too when asked), from its analyst (a local
    one when none is given)."""
    info = read_run(run_dir)
    with spinner(f"reading run {info.run_id}…") as say:
        async with analyst_channel(run_dir, address, say) as channel:
            say(f"reading the experiments of run {info.run_id}…")
            experiments = await list_experiments(channel, info.run_id, include_replicates=include_replicates)
    return RunData(info, experiments)


async def load_experiment(run_dir: Path, address: str | None, reference: str) -> common_pb2.Experiment:
    """The experiment `reference` names (see find_experiment)."""
    info = read_run(run_dir)
    with spinner(f"reading run {info.run_id}…") as say:
        async with analyst_channel(run_dir, address, say) as channel:
            say(f"finding {reference!r}…")
            return await find_experiment(channel, info, reference)


async def load_with_names(
    run_dir: Path, address: str | None, reference: str
) -> tuple[common_pb2.Experiment, dict[str, str]]:
    """One experiment and the names of its parents (one channel, so a local analyst starts once)."""
    info = read_run(run_dir)
    with spinner(f"reading run {info.run_id}…") as say:
        async with analyst_channel(run_dir, address, say) as channel:
            say(f"finding {reference!r}…")
            experiment = await find_experiment(channel, info, reference)
            names = {experiment.id: experiment.name}
            for parent in experiment.parent_ids:
                found = await get_experiment(channel, parent)
                names[parent] = found.name if found is not None else parent
    return experiment, names
